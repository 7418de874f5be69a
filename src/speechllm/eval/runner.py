"""Run (approach x task x dataset x perturbation), journaling each item as it finishes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechllm.audio import save
from speechllm.data import Item
from speechllm.eval.backends import Backend, Job, Outcome, Serial, item_key
from speechllm.eval.journal import Journal, Row
from speechllm.eval.tasks import Task, make_task

__all__ = ["Backend", "Summary", "answers_dir", "item_key", "run", "summarize"]


@dataclass(frozen=True)
class Summary:
    run: str
    items: int
    errors: int
    metrics: dict[str, float]
    model_seconds: float = 0.0  # time inside SpeechLM.respond in this invocation
    wall_seconds: float = 0.0  # wall time of this invocation's item loop
    error_samples: list[str] = field(default_factory=list)


def answers_dir(journal: Journal, run: str) -> Path:
    """Where a run's spoken answers are written (for tasks that keep them)."""
    return journal.path.parent / f"{journal.path.stem}-audio" / run


def run(job: Job, items: Sequence[Item], journal: Journal, name: str, config: dict[str, Any],
        backend: Backend | None = None,
        progress: Callable[[int, int], None] | None = None) -> Summary:
    """Evaluate every item not yet journaled for run `name`; return the whole run's summary.

    `config` must describe the run completely (approach, task, data, perturbation, seed):
    resuming with a different one is refused.
    """
    import time

    journal.start(name, config)
    done = journal.done(name)
    todo = [it for it in items if item_key(it) not in done]
    model_seconds, start = 0.0, time.perf_counter()
    finished = len(done & {item_key(it) for it in items})
    if progress:
        progress(finished, len(items))
    for outcome in (backend or Serial()).map(job, todo):
        journal.record(name, _keep_audio(journal, name, outcome))
        model_seconds += outcome.model_seconds
        finished += 1
        if progress:
            progress(finished, len(items))
    summary = summarize(journal, name, job.task)
    return Summary(summary.run, summary.items, summary.errors, summary.metrics, model_seconds,
                   time.perf_counter() - start, summary.error_samples)


def _keep_audio(journal: Journal, name: str, outcome: Outcome) -> Row:
    row = outcome.row
    if outcome.audio is None:
        return row
    folder = answers_dir(journal, name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (row.item.replace(":", "-").rsplit(".", 1)[0] + ".wav")
    save(outcome.audio, path)
    return Row(row.item, row.prediction, row.scores, row.timings, row.error, row.reference,
               str(path))


def summarize(journal: Journal, name: str, task: Task | None = None) -> Summary:
    """A run's figures from its journal (the task is read from the run's config if not given)."""
    rows = journal.rows(name)
    task = task or make_task(journal.config(name)["task"])
    ok = [r for r in rows if r.error is None]
    errors = [f"{r.item}: {r.error}" for r in rows if r.error is not None]
    metrics = task.metrics(ok) if ok else {}
    return Summary(name, len(rows), len(errors), metrics, error_samples=errors[:3])
