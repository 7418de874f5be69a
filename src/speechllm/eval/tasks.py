"""Tasks: how any SpeechLM is prompted for an item, and how its answer is scored.

A task never looks at the approach: it builds a `Request` and reads a `Response`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import jiwer

from speechllm.audio import Audio
from speechllm.eval.manifest import Item
from speechllm.speechlm import Request, Response
from speechllm.text_norm import normalize, word_errors


class Task(Protocol):
    name: str

    def request(self, item: Item, audio: Audio) -> Request: ...

    def score(self, item: Item, response: Response) -> tuple[str, dict[str, float]]:
        """(prediction text, per-item scores)."""
        ...


def _heard(response: Response) -> str:
    """What the model understood the user to say: the transcript when the approach has one."""
    return response.transcript if response.transcript is not None else response.text


@dataclass(frozen=True)
class ASRTask:
    """Speech recognition: WER from word errors and reference words, summed over the set."""

    name: str = "asr"
    instruction: str = "Transcribe the audio exactly."

    def request(self, item: Item, audio: Audio) -> Request:
        return Request(audio=audio, system=self.instruction, want_audio=False, max_tokens=1)

    def score(self, item: Item, response: Response) -> tuple[str, dict[str, float]]:
        hyp = _heard(response)
        errors, words = word_errors(item.text or "", hyp)
        chars_ref = normalize(item.text or "").replace(" ", "")
        chars_hyp = normalize(hyp).replace(" ", "")
        cer = jiwer.cer(chars_ref, chars_hyp) if chars_ref and chars_hyp else float(
            bool(chars_ref) or bool(chars_hyp))
        return hyp, {"word_errors": errors, "ref_words": words, "cer": cer}


_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@dataclass(frozen=True)
class DigitLabelTask:
    """Spoken language understanding as a 10-way label: which digit was said (field `digit`)."""

    name: str = "digit"

    def request(self, item: Item, audio: Audio) -> Request:
        return Request(audio=audio, system="Which digit was spoken? Answer with one digit.",
                       want_audio=False, max_tokens=4)

    def score(self, item: Item, response: Response) -> tuple[str, dict[str, float]]:
        words = normalize(_heard(response)).split()
        label = next((_DIGITS.index(w) for w in words if w in _DIGITS), -1)
        return str(label), {"correct": float(label == int(item.fields["digit"]))}


@dataclass(frozen=True)
class SpokenQATask:
    """Spoken question answering against field `answer`: exact match and contains-answer."""

    name: str = "qa"
    system: str = "Answer the question in a few words."

    def request(self, item: Item, audio: Audio) -> Request:
        return Request(audio=audio, system=self.system, want_audio=False, max_tokens=48)

    def score(self, item: Item, response: Response) -> tuple[str, dict[str, float]]:
        answer = normalize(str(item.fields.get("answer", "")))
        said = normalize(response.text)
        contains = bool(answer) and re.search(rf"\b{re.escape(answer)}\b", said) is not None
        return response.text, {"exact": float(said == answer), "contains": float(contains)}


TASKS: dict[str, type] = {"asr": ASRTask, "digit": DigitLabelTask, "qa": SpokenQATask}


def make_task(name: str) -> Task:
    try:
        task: Task = TASKS[name]()
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None
    return task
