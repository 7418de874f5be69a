"""Where items are evaluated: in this thread, in a pool of worker threads, or on Ray actors.

Every backend takes the same `Job` and yields each item's `Outcome` as soon as it finishes;
the runner journals it at once, in the driver, so a killed run loses nothing however the
work was spread. Each worker builds its own `SpeechLM` from the job's factory (model objects
such as llama.cpp contexts are not safe to share between threads).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from speechllm._optional import require
from speechllm.audio import Audio, load
from speechllm.data import Item
from speechllm.errors import NoSpeechError
from speechllm.eval.journal import Row
from speechllm.eval.perturb import Perturbation
from speechllm.eval.tasks import Task
from speechllm.speechlm import Response, SpeechLM
from speechllm.timing import Timings


def item_key(item: Item) -> str:
    return f"{item.line}:{item.audio.name}"


@dataclass(frozen=True)
class Job:
    make_lm: Callable[[], SpeechLM]  # picklable for Ray (see `speechllm.approach.Factory`)
    task: Task
    perturbation: Perturbation | None = None
    seed: int = 0


@dataclass(frozen=True)
class Outcome:
    row: Row
    audio: Audio | None = None  # the spoken answer, when the task keeps it
    model_seconds: float = 0.0  # time inside SpeechLM.respond (for harness overhead)


def evaluate(lm: SpeechLM, job: Job, item: Item) -> Outcome:
    """One item, start to score. Any failure becomes the row's error: the run goes on."""
    import time

    key = item_key(item)
    try:
        reference = job.task.reference(item)
        audio = load(item.audio)
        if job.perturbation is not None:
            audio = job.perturbation.apply(audio, seed=job.seed + item.line)
        request = job.task.request(item, audio)
        start = time.perf_counter()
        try:
            response = lm.respond(request)
        except NoSpeechError:
            # The system heard nothing: an empty answer, scored as one (all words deleted),
            # not dropped from the metrics.
            response = Response("", "", None, Timings(total=time.perf_counter() - start))
        model_seconds = time.perf_counter() - start
        prediction, scores = job.task.score(item, response)
    except Exception as exc:  # journaled as data
        return Outcome(Row(key, None, {}, {}, f"{type(exc).__name__}: {exc}"))
    t = response.timings
    timings = {"ttft": t.ttft, "ttfa": t.ttfa, "total": t.total,
               "audio_seconds": audio.duration,
               "rtf": t.total / audio.duration if audio.duration else None,
               "spans": [dataclasses.asdict(s) for s in t.spans]}
    kept = response.audio if job.task.keep_audio else None
    return Outcome(Row(key, prediction, scores, timings, None, reference), kept, model_seconds)


class Backend(Protocol):
    def map(self, job: Job, items: Sequence[Item]) -> Iterator[Outcome]:
        """Outcomes in the order they finish."""
        ...


@dataclass(frozen=True)
class Serial:
    """In this thread, one model; `lm` reuses an already built model."""

    lm: SpeechLM | None = None

    def map(self, job: Job, items: Sequence[Item]) -> Iterator[Outcome]:
        lm = self.lm or job.make_lm()
        for item in items:
            yield evaluate(lm, job, item)


@dataclass(frozen=True)
class Threads:
    """`workers` threads on this machine, each with its own model. CTranslate2, llama.cpp and
    onnxruntime release the GIL, so workers run truly in parallel; pick workers x threads per
    model <= cores."""

    workers: int = 2

    def map(self, job: Job, items: Sequence[Item]) -> Iterator[Outcome]:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        todo: queue.Queue[Item] = queue.Queue()
        for item in items:
            todo.put(item)
        done: queue.Queue[Outcome | BaseException | None] = queue.Queue()
        stop = threading.Event()

        def work() -> None:
            try:
                lm = job.make_lm()
                while not stop.is_set():
                    try:
                        item = todo.get_nowait()
                    except queue.Empty:
                        break
                    done.put(evaluate(lm, job, item))
            except BaseException as exc:  # a model that fails to load stops the run
                done.put(exc)
            finally:
                done.put(None)

        threads = [threading.Thread(target=work, name=f"eval-{n}", daemon=True)
                   for n in range(min(self.workers, max(1, len(items))))]
        for t in threads:
            t.start()
        running = len(threads)
        try:
            while running:
                got = done.get()
                if got is None:
                    running -= 1
                elif isinstance(got, BaseException):
                    raise got
                else:
                    yield got
        finally:
            stop.set()
            for t in threads:
                t.join()


class _Actor:
    """Body of a Ray actor: builds the model once, then evaluates items sent to it."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.lm = job.make_lm()

    def evaluate(self, item: Item) -> Outcome:
        return evaluate(self.lm, self.job, item)


@dataclass(frozen=True)
class RayActors:
    """The same run on a Ray cluster: `workers` actors, each holding a model. `address` is a
    cluster ("ray://host:10001", or "auto" for the one this machine has joined); None starts
    a local Ray instance. Each actor reserves `cpus_per_worker` CPUs. Items are dealt out as
    actors free up; results come back to this process, which journals them."""

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0
    init_kwargs: tuple[tuple[str, Any], ...] = ()

    def map(self, job: Job, items: Sequence[Item]) -> Iterator[Outcome]:
        ray = require("ray", "ray")
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     **dict(self.init_kwargs))
        try:
            actor = ray.remote(num_cpus=self.cpus_per_worker)(_Actor)
            actors = [actor.remote(job) for _ in range(min(self.workers, max(1, len(items))))]
            pending: dict[Any, Any] = {}
            queue_ = list(reversed(items))
            for a in actors:
                if queue_:
                    pending[a.evaluate.remote(queue_.pop())] = a
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                a = pending.pop(ready[0])
                if queue_:
                    pending[a.evaluate.remote(queue_.pop())] = a
                yield ray.get(ready[0])
        finally:
            if started_here:
                ray.shutdown()
