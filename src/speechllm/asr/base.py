"""The ASR protocol and its typed results."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from speechllm.audio import Audio
from speechllm.registry import Registry

Task = Literal["transcribe", "translate"]


@dataclass(frozen=True)
class ASROptions:
    task: Task = "transcribe"  # "translate": speech in any language -> English text
    language: str | None = None  # ISO code such as "en"; None detects it
    beam_size: int = 5
    word_timestamps: bool = False
    initial_prompt: str | None = None  # text "said before": biases vocabulary and style
    hotwords: str | None = None  # words and names likely to be said (faster-whisper hotwords)
    # Whisper's fallback schedule: decode at 0, retry hotter when the output looks wrong.
    temperature: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    # Encoder window for short utterances, in seconds. Whisper pads every input to 30 s, so a
    # 3 s question costs a 30 s encoder pass; a shorter window (utterances that fit it only)
    # is faster. None keeps Whisper's 30 s. Decodes once, without timestamps or fallback.
    window_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.window_seconds is not None and not 1.0 <= self.window_seconds <= 30.0:
            raise ValueError(f"window_seconds must be in [1, 30], got {self.window_seconds}")
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {self.task!r}")
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    probability: float


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    language_probability: float
    duration: float
    segments: tuple[Segment, ...] = ()


@dataclass(frozen=True)
class Hypothesis:
    """One entry of an N-best list, best first."""

    text: str
    score: float  # mean token log-probability from the decoder (length-normalised); higher wins
    num_tokens: int


@dataclass(frozen=True)
class SegmentHypotheses:
    """The N-best list of one stretch of a longer recording."""

    start: float  # seconds in the audio given
    end: float
    hypotheses: tuple[Hypothesis, ...]  # best first: the plain transcript's text leads
    language: str | None = None  # what it was decoded as (ISO code), where the ASR knows


class ASR(Protocol):
    def transcribe(self, audio: Audio, options: ASROptions | None = None) -> Transcript: ...

    def nbest(self, audio: Audio, n: int, options: ASROptions | None = None) -> list[Hypothesis]:
        """The n best hypotheses of one utterance, best first."""
        ...

    def nbest_segments(self, audio: Audio, n: int, options: ASROptions | None = None
                       ) -> list[SegmentHypotheses]:
        """N-best lists for audio of any length, segment by segment; each list's first entry
        is what `transcribe` gives for that stretch, so choosing the first of every list
        reproduces the plain transcript."""
        ...

    def detect_language(self, audio: Audio) -> tuple[str, float]:
        """(ISO code, probability)."""
        ...


@runtime_checkable
class ReadsWithin(Protocol):
    """A recogniser that can also read audio with a closed vocabulary (an optional skill)."""

    def read_within(self, audio: Audio, phrases: Sequence[str], heard: str,
                    options: ASROptions | None = None) -> tuple[Hypothesis, Hypothesis]:
        """(`heard`, the best reading spelled only with `phrases`' words), each scored by
        the model's own mean token log-probability on `audio`: how much worse the closed
        reading explains the sound than the free transcript `heard` does."""
        ...


# name -> factory(model) where model is an embedded name or a model folder
ASR_BACKENDS: Registry[Callable[[str], ASR]] = Registry("ASR backend")
ASR_BACKENDS.register("faster-whisper", "speechllm.asr.faster_whisper:FasterWhisperASR")
