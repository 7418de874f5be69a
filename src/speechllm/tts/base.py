"""The TTS protocol."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from speechllm.audio import Audio


class TTS(Protocol):
    sample_rate: int

    def stream(self, text: str) -> Iterator[Audio]:
        """Audio pieces (one or more) speaking `text`, as soon as each is ready."""
        ...


def synthesize(tts: TTS, text: str) -> Audio:
    """All of `text` as one Audio."""
    parts = list(tts.stream(text))
    return Audio.concat(parts) if parts else Audio.silence(0.0, tts.sample_rate)
