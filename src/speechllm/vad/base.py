"""The VAD protocol and trimming built on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from speechllm.audio import Audio
from speechllm.errors import NoSpeechError
from speechllm.registry import Registry


@dataclass(frozen=True)
class SpeechRegion:
    start: float  # seconds
    end: float


class VAD(Protocol):
    def speech_probabilities(self, audio: Audio) -> list[float]:
        """One speech probability per frame of `frame_seconds`."""
        ...

    def regions(self, audio: Audio) -> list[SpeechRegion]: ...

    def stream(self) -> StreamingVAD:
        """A detector fed chunk by chunk, for live audio."""
        ...


class StreamingVAD(Protocol):
    def feed(self, samples: np.ndarray) -> list[float]:
        """Speech probabilities of the whole frames completed by `samples` (16 kHz)."""
        ...


def speech_span(audio: Audio, vad: VAD, pad: float = 0.2) -> tuple[float, float]:
    """(start, end) in seconds from the first speech onset to the last offset, with `pad`
    seconds each side. Raises NoSpeechError when the VAD finds no speech at all."""
    regions = vad.regions(audio)
    if not regions:
        raise NoSpeechError(f"no speech detected in {audio.duration:.2f} s of audio")
    return max(0.0, regions[0].start - pad), min(audio.duration, regions[-1].end + pad)


def trim(audio: Audio, vad: VAD, pad: float = 0.2) -> Audio:
    """`audio` cut to its `speech_span`."""
    return audio.slice(*speech_span(audio, vad, pad))


VAD_BACKENDS: Registry[Callable[[], VAD]] = Registry("VAD backend")
VAD_BACKENDS.register("silero", "speechllm.vad.silero:SileroVAD")
