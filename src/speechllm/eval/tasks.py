"""Tasks: how any SpeechLM is prompted for an item, and how its answers are scored.

A task never looks at the approach: it builds a `Request` and reads a `Response`. Per-item
scores go to the journal; `metrics` turns journaled rows into the run's figures, so the same
function serves the summary, bootstrap confidence intervals and reports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jiwer

from speechllm.audio import Audio
from speechllm.data import Item
from speechllm.eval.journal import Row
from speechllm.registry import Registry
from speechllm.speechlm import Context, Request, Response
from speechllm.text_norm import normalize, word_errors
from speechllm.tools import Tool, tools_of

# free-text arguments match when their words overlap this much (F1 of the word sets, after
# normalisation): "Pasta Timer" for "pasta", "relaxing piano" for "some relaxing piano"
LOOSE_F1 = 0.6


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


def _same(expected: Any, got: Any, free_text: bool) -> bool:
    if isinstance(expected, bool) or isinstance(got, bool):
        return expected is got
    if isinstance(expected, int | float) and isinstance(got, int | float):
        return abs(float(expected) - float(got)) < 1e-6
    if isinstance(expected, str) and isinstance(got, str):
        if free_text:
            want, have = set(normalize(expected).split()), set(normalize(got).split())
            common = len(want & have)
            return common > 0 and 2 * common / (len(want) + len(have)) >= LOOSE_F1
        return normalize(expected) == normalize(got)
    return bool(expected == got)


def arguments_match(expected: dict[str, Any], got: dict[str, Any], tool: Tool | None,
                    free_text: frozenset[str]) -> bool:
    """Every expected argument was passed with that value (or left out where it is the
    schema's default); strings compare after normalisation, free text by LOOSE_F1.
    Extra optional arguments the model adds do not count against it."""
    props = tool.parameters.get("properties", {}) if tool is not None else {}
    for key, want in expected.items():
        if key in got:
            value = got[key]
        elif "default" in props.get(key, {}):
            value = props[key]["default"]
        else:
            return False
        if not _same(want, value, key in free_text):
            return False
    return True


@dataclass(frozen=True)
class ToolCallTask:
    """Spoken requests that need a function call, or none: field "call" is {"name",
    "arguments"} or null; field "tools" may list an item's own tools (OpenAI's shape),
    else the benchmark's catalog (speechllm.eval.tool_catalog) is offered.

    Per item: the right function (or rightly none) and exact arguments. The run's figures:
    exact (all items), function accuracy, call_exact (items needing a call), false_call
    (items needing none), missed_call, the transcript's WER, and exact per tool."""

    name: str = "tools"
    max_tokens: int = 96
    keep_audio: bool = False

    def _tools(self, item: Item) -> tuple[Tool, ...]:
        from speechllm.eval.tool_catalog import CATALOG

        defs = item.fields.get("tools")
        return tools_of(defs) if defs is not None else CATALOG

    def request(self, item: Item, audio: Audio) -> Request:
        return Request(audio=audio, want_audio=False, max_tokens=self.max_tokens,
                       tools=self._tools(item), context=Context.of(item.fields.get("context")))

    def reference(self, item: Item) -> str | None:
        return json.dumps(item.fields.get("call"), sort_keys=True)

    def score(self, item: Item, response: Response) -> tuple[str, dict[str, float]]:
        from speechllm.eval.tool_catalog import FREE_TEXT

        expected = item.fields.get("call")
        got = response.tool_calls[0] if response.tool_calls else None
        want_name = expected["name"] if expected else None
        right = (got.name if got else None) == want_name
        exact = right
        if right and expected and got is not None:
            tool = next((t for t in self._tools(item) if t.name == got.name), None)
            loose = frozenset(item.fields.get("free_text", FREE_TEXT))
            exact = arguments_match(expected.get("arguments", {}), got.args(), tool, loose)
        prediction = json.dumps({"name": got.name, "arguments": got.args()}, sort_keys=True) \
            if got else "no call: " + response.text.strip()[:160]
        errors, words = word_errors(item.text or "", _heard(response))
        return prediction, {"needs_call": float(expected is not None),
                            "called": float(got is not None), "right_function": float(right),
                            "exact": float(exact),
                            "several_calls": float(len(response.tool_calls) > 1),
                            "word_errors": errors, "ref_words": words}

    def metrics(self, rows: Sequence[Row]) -> dict[str, float]:
        calls = [r for r in rows if r.scores["needs_call"]]
        nones = [r for r in rows if not r.scores["needs_call"]]
        words = sum(r.scores["ref_words"] for r in rows)
        out = {"exact": _mean(rows, "exact"), "function": _mean(rows, "right_function"),
               "call_exact": _mean(calls, "exact"),
               "false_call": _mean(nones, "called"),
               "missed_call": 1.0 - _mean(calls, "called") if calls else float("nan"),
               "wer": sum(r.scores["word_errors"] for r in rows) / words if words else
               float("nan")}
        by_tool: dict[str, list[Row]] = {}
        for r in rows:
            call = json.loads(r.reference or "null")
            by_tool.setdefault(call["name"] if call else "none", []).append(r)
        for tool, some in sorted(by_tool.items()):
            out[f"exact:{tool}"] = _mean(some, "exact")
        return out


TASKS: Registry[Callable[[], Task]] = Registry("task")
TASKS.register("asr", ASRTask)
TASKS.register("digit", DigitLabelTask)
TASKS.register("qa", SpokenQATask)
TASKS.register("translate", TranslationTask)
TASKS.register("dialogue", DialogueTask)
TASKS.register("tools", ToolCallTask)


def make_task(name: str) -> Task:
    return TASKS.get(name)()
