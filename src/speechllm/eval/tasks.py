"""Tasks: how any SpeechLM is prompted for an item, and how its answers are scored.

A task never looks at the approach: it builds a `Request` and reads a `Response`. Per-item
scores go to the journal; `metrics` turns journaled rows into the run's figures, so the same
function serves the summary, bootstrap confidence intervals and reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import jiwer

from speechllm.audio import Audio
from speechllm.data import Item
from speechllm.eval.journal import Row
from speechllm.registry import Registry
from speechllm.speechlm import Context, Request, Response
from speechllm.text_norm import normalize, word_errors


class Task(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def keep_audio(self) -> bool:
        """The runner saves each spoken answer beside the journal."""
        ...

    def request(self, item: Item, audio: Audio) -> Request: ...

    def reference(self, item: Item) -> str | None:
        """The text a prediction is judged against (stored with the row)."""
        ...

    def score(self, item: Item, response: Response) -> tuple[str, dict[str, float]]:
        """(prediction text, per-item scores)."""
        ...

    def metrics(self, rows: Sequence[Row]) -> dict[str, float]:
        """The run's figures from its successful rows."""
        ...


def _heard(response: Response) -> str:
    """What the model understood the user to say: the transcript when the approach has one."""
    return response.transcript if response.transcript is not None else response.text


def _mean(rows: Sequence[Row], key: str) -> float:
    return sum(r.scores[key] for r in rows) / len(rows) if rows else float("nan")


@dataclass(frozen=True)
class ASRTask:
    """Speech recognition. WER = word errors / reference words, summed over the set (corpus
    WER, as in the Whisper paper), after `text_norm.normalize` (numerals and words equal)."""

    name: str = "asr"
    instruction: str = "Transcribe the audio exactly."
    max_tokens: int = 128
    keep_audio: bool = False

    def request(self, item: Item, audio: Audio) -> Request:
        return Request(audio=audio, system=self.instruction, want_audio=False,
                       max_tokens=self.max_tokens, intent="transcribe",
                       context=Context.of(item.fields.get("context")))

    def reference(self, item: Item) -> str | None:
        return item.text

    def score(self, item: Item, response: Response) -> tuple[str, dict[str, float]]:
        hyp = _heard(response)
        errors, words = word_errors(item.text or "", hyp)
        chars_ref = normalize(item.text or "").replace(" ", "")
        chars_hyp = normalize(hyp).replace(" ", "")
        cer = jiwer.cer(chars_ref, chars_hyp) if chars_ref and chars_hyp else float(
            bool(chars_ref) or bool(chars_hyp))
        return hyp, {"word_errors": errors, "ref_words": words, "cer": cer}

    def metrics(self, rows: Sequence[Row]) -> dict[str, float]:
        words = sum(r.scores["ref_words"] for r in rows)
        wer = sum(r.scores["word_errors"] for r in rows) / words if words else float("nan")
        return {"wer": wer, "cer": _mean(rows, "cer")}


_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@dataclass(frozen=True)
class DigitLabelTask:
    """Spoken language understanding as a 10-way label: which digit was said (field `digit`)."""

    name: str = "digit"
    keep_audio: bool = False

    def request(self, item: Item, audio: Audio) -> Request:
        return Request(audio=audio, system="Which digit was spoken? Answer with one digit.",
                       want_audio=False, max_tokens=4,
                       context=Context.of(item.fields.get("context")))

    def reference(self, item: Item) -> str | None:
        return str(item.fields["digit"])

    def score(self, item: Item, response: Response) -> tuple[str, dict[str, float]]:
        words = normalize(_heard(response)).split()
        label = next((_DIGITS.index(w) for w in words if w in _DIGITS), -1)
        return str(label), {"correct": float(label == int(item.fields["digit"]))}

    def metrics(self, rows: Sequence[Row]) -> dict[str, float]:
        return {"accuracy": _mean(rows, "correct")}


@dataclass(frozen=True)
class SpokenQATask:
    """Spoken question answering against field `answer`: exact match and contains-answer,
    both after normalisation."""

    name: str = "qa"
    system: str = "Answer the question in a few words."
    keep_audio: bool = False

    def request(self, item: Item, audio: Audio) -> Request:
        return Request(audio=audio, system=self.system, want_audio=False, max_tokens=48,
                       context=Context.of(item.fields.get("context")))

    def reference(self, item: Item) -> str | None:
        return str(item.fields.get("answer", ""))

    def score(self, item: Item, response: Response) -> tuple[str, dict[str, float]]:
        answer = normalize(str(item.fields.get("answer", "")))
        said = normalize(response.text)
        contains = bool(answer) and re.search(rf"\b{re.escape(answer)}\b", said) is not None
        return response.text, {"exact": float(said == answer), "contains": float(contains)}

    def metrics(self, rows: Sequence[Row]) -> dict[str, float]:
        return {"exact": _mean(rows, "exact"), "contains": _mean(rows, "contains")}


@dataclass(frozen=True)
class TranslationTask:
    """Speech translation into field `target` (default English) against field `translation`:
    corpus BLEU and chrF from sacrebleu with its default tokenisation."""

    name: str = "translate"
    max_tokens: int = 128
    keep_audio: bool = False

    def request(self, item: Item, audio: Audio) -> Request:
        target = item.fields.get("target", "English")
        system = (f"Translate what the user says into {target}. "
                  "Reply with the translation only.")
        return Request(audio=audio, system=system, want_audio=False,
                       max_tokens=self.max_tokens)

    def reference(self, item: Item) -> str | None:
        if "translation" not in item.fields:
            raise ValueError("the translate task needs a \"translation\" field on every item")
        return str(item.fields["translation"])

    def score(self, item: Item, response: Response) -> tuple[str, dict[str, float]]:
        import sacrebleu

        ref = self.reference(item) or ""
        hyp = response.text.strip()
        return hyp, {"chrf": sacrebleu.sentence_chrf(hyp, [ref]).score}

    def metrics(self, rows: Sequence[Row]) -> dict[str, float]:
        import sacrebleu

        if not rows:
            return {"bleu": float("nan"), "chrf": float("nan")}
        hyps = [r.prediction or "" for r in rows]
        refs = [[r.reference or "" for r in rows]]
        return {"bleu": sacrebleu.corpus_bleu(hyps, refs).score,
                "chrf": sacrebleu.corpus_chrf(hyps, refs).score}


@dataclass(frozen=True)
class DialogueTask:
    """Open dialogue: no reference; the answer's text and audio are kept for inspection
    (`speechllm report` lists them), with its length and latency."""

    name: str = "dialogue"
    max_tokens: int = 160
    keep_audio: bool = True

    def request(self, item: Item, audio: Audio) -> Request:
        return Request(audio=audio, want_audio=True, max_tokens=self.max_tokens)

    def reference(self, item: Item) -> str | None:
        return item.text  # what the user said, when the manifest has it

    def score(self, item: Item, response: Response) -> tuple[str, dict[str, float]]:
        seconds = response.audio.duration if response.audio is not None else 0.0
        return response.text, {"answered": float(bool(response.text.strip())),
                               "answer_words": float(len(response.text.split())),
                               "answer_seconds": seconds}

    def metrics(self, rows: Sequence[Row]) -> dict[str, float]:
        return {k: _mean(rows, k) for k in ("answered", "answer_words", "answer_seconds")}


TASKS: Registry[Callable[[], Task]] = Registry("task")
TASKS.register("asr", ASRTask)
TASKS.register("digit", DigitLabelTask)
TASKS.register("qa", SpokenQATask)
TASKS.register("translate", TranslationTask)
TASKS.register("dialogue", DialogueTask)


def make_task(name: str) -> Task:
    return TASKS.get(name)()
