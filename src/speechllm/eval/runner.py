"""Run (approach x task x dataset x perturbation), journaling each item as it finishes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from speechllm.audio import load
from speechllm.eval.journal import Journal, Row
from speechllm.eval.manifest import Item
from speechllm.eval.perturb import Perturbation
from speechllm.eval.tasks import Task
from speechllm.speechlm import SpeechLM


@dataclass(frozen=True)
class Summary:
    run: str
    items: int
    errors: int
    metrics: dict[str, float]


def item_key(item: Item) -> str:
    return f"{item.line}:{item.audio.name}"


def run(lm: SpeechLM, task: Task, items: list[Item], journal: Journal, name: str,
        config: dict[str, Any], perturbation: Perturbation | None = None, seed: int = 0,
        progress: Callable[[int, int], None] | None = None) -> Summary:
    """Score every item not yet in the journal for run `name`; returns the whole run's summary.

    A failing item (bad audio, no speech) is journaled with its error and the run goes on.
    """
    journal.start(name, config)
    done = journal.done(name)
    todo = [it for it in items if item_key(it) not in done]
    for n, item in enumerate(todo, 1):
        try:
            audio = load(item.audio)
            if perturbation is not None:
                audio = perturbation.apply(audio, seed=seed + item.line)
            response = lm.respond(task.request(item, audio))
            prediction, scores = task.score(item, response)
            t = response.timings
            timings = {"ttft": t.ttft, "ttfa": t.ttfa, "total": t.total,
                       "audio_seconds": audio.duration,
                       "rtf": t.total / audio.duration if audio.duration else None,
                       "spans": [dataclasses.asdict(s) for s in t.spans]}
            journal.record(name, Row(item_key(item), prediction, scores, timings, None))
        except Exception as exc:  # journaled as data; the run goes on
            journal.record(name, Row(item_key(item), None, {}, {}, f"{type(exc).__name__}: {exc}"))
        if progress:
            progress(len(done) + n, len(items))
    return summarize(journal, name)


def summarize(journal: Journal, name: str) -> Summary:
    rows = journal.rows(name)
    ok = [r for r in rows if r.error is None]
    metrics: dict[str, float] = {}
    if ok and "word_errors" in ok[0].scores:
        metrics["wer"] = sum(r.scores["word_errors"] for r in ok) / max(
            1, sum(r.scores["ref_words"] for r in ok))
        metrics["cer"] = sum(r.scores["cer"] for r in ok) / len(ok)
    for key in ("correct", "exact", "contains"):
        if ok and key in ok[0].scores:
            metrics["accuracy" if key == "correct" else key] = sum(
                r.scores[key] for r in ok) / len(ok)
    return Summary(name, len(rows), len(rows) - len(ok), metrics)
