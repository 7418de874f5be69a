"""Spans and latency accounting shared by every approach.

All times are seconds on one monotonic clock (`time.perf_counter`), relative to `t0`: the moment
the end of the user's speech is available to the system. For a file or an upload that is when the
request arrives; for a live stream it is when VAD closes the turn.

- ttft: t0 -> first output text token.
- ttfa: t0 -> first output audio sample ready to play.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

now = time.perf_counter


@dataclass(frozen=True)
class Span:
    """One stage's work, e.g. ('asr', 0.02, 0.61); times relative to t0."""

    name: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Timings:
    """Per-stage spans of one response plus the two user-facing latencies."""

    spans: tuple[Span, ...] = ()
    ttft: float | None = None
    ttfa: float | None = None
    total: float = 0.0

    def stage(self, name: str) -> float:
        """Summed duration of every span called `name` (0.0 if none)."""
        return sum(s.duration for s in self.spans if s.name == name)

    def stages(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.spans:
            out[s.name] = out.get(s.name, 0.0) + s.duration
        return out


@dataclass
class Stopwatch:
    """Collects spans during one response; thread-safe, since stages run in worker threads."""

    t0: float = field(default_factory=now)
    _spans: list[Span] = field(default_factory=list)
    _ttft: float | None = None
    _ttfa: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def elapsed(self) -> float:
        return now() - self.t0

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        start = self.elapsed()
        try:
            yield
        finally:
            self.add(name, start, self.elapsed())

    def add(self, name: str, start: float, end: float) -> Span:
        s = Span(name, start, end)
        with self._lock:
            self._spans.append(s)
        return s

    def mark_text(self) -> None:
        with self._lock:
            if self._ttft is None:
                self._ttft = self.elapsed()

    def mark_audio(self) -> None:
        with self._lock:
            if self._ttfa is None:
                self._ttfa = self.elapsed()

    def freeze(self) -> Timings:
        with self._lock:
            spans = tuple(sorted(self._spans, key=lambda s: s.start))
            return Timings(spans, self._ttft, self._ttfa, self.elapsed())
