"""The TTS protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from speechllm.audio import Audio
from speechllm.registry import Registry


class TTS(Protocol):
    sample_rate: int

    def stream(self, text: str) -> Iterator[Audio]:
        """Audio pieces (one or more) speaking `text`, as soon as each is ready."""
        ...


def synthesize(tts: TTS, text: str) -> Audio:
    """All of `text` as one Audio."""
    parts = list(tts.stream(text))
    return Audio.concat(parts) if parts else Audio.silence(0.0, tts.sample_rate)


# name -> factory(voice); None picks the backend's default voice
TTS_BACKENDS: Registry[Callable[[str | None], TTS]] = Registry("TTS backend")
TTS_BACKENDS.register("piper", "speechllm.tts.piper:piper_tts")
TTS_BACKENDS.register("espeak", "speechllm.tts.espeak:espeak_tts")


def make_tts(backend: str = "piper", voice: str | None = None) -> TTS:
    """A registered TTS backend with `voice` (e.g. piper: embedded name or .onnx path; espeak:
    an espeak-ng voice name)."""
    return TTS_BACKENDS.get(backend)(voice)
