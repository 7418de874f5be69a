"""What `speechllm serve` runs with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from speechllm.turn.barge_in import BACKCHANNELS


@dataclass(frozen=True)
class TurnTiming:
    """When a voice turn starts and ends: the server's defaults, or what a session asked for
    (`turn_detection` in `session.update`)."""

    threshold: float = 0.5  # speech probability that starts a turn
    end_silence: float = 0.9  # silence that ends a turn that sounds finished
    patient_silence: float = 1.5  # silence that ends one that sounds unfinished
    # silence after which the answer is prepared (0: never); 0.03 = the VAD's first silent
    # 32 ms window
    speculate_after: float = 0.03
    preroll: float = 0.3  # audio kept before the detected onset (OpenAI's prefix padding)
    auto_respond: bool = True  # False: a turn's end is reported; response.create answers it

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not 0.0 <= self.speculate_after < self.end_silence <= self.patient_silence:
            raise ValueError("need 0 <= speculate_after < end_silence <= patient_silence, got "
                             f"{self.speculate_after}, {self.end_silence}, "
                             f"{self.patient_silence}")
        if not 0.0 <= self.preroll <= 2.0:
            raise ValueError(f"preroll must be 0-2 s, got {self.preroll}")

    @property
    def hysteresis(self) -> float:
        """How far below `threshold` speech must fall to count as silence."""
        return min(0.15, self.threshold / 2)


@dataclass(frozen=True)
class ServeSettings:
    # any approach config (speechllm.approach): the cascade by default
    approach: dict[str, Any] = field(default_factory=lambda: {"approach": "cascade"})
    model_id: str = "speechllm"  # the id /v1/models lists; requests may name any model
    api_key: str | None = None  # when set, every route and the WebSocket need it
    workers: int = 1  # turns that run at once; the rest queue in arrival order
    max_upload_bytes: int = 25 * 1024 * 1024  # OpenAI's own cap for audio uploads
    max_audio_seconds: float = 600.0  # longest audio accepted in one request or voice turn
    idle_timeout: float = 120.0  # a voice session with no message for this long is closed
    tts: str = "piper"  # speaks for /v1/audio/speech and for models that answer in text only
    voice: str | None = None
    vad_threshold: float = 0.5  # speech probability that starts a voice turn
    # seconds of silence that end a voice turn that sounds finished. The answer is prepared
    # during the pause, so up to about 0.9 s this costs no time to first audio (measured in
    # docs/realtime_latency.md) and stops answers to half-said requests that paused longer
    end_silence: float = 0.9
    # A voice turn's answer starts being prepared (recognised, generated, the first clause
    # spoken into a buffer) after this much silence, and is sent once the turn ends; if the
    # user goes on speaking it is thrown away. 0 turns speculation off. The default starts at
    # the VAD's first silent window: the CPU is idle while the user speaks, so an early start
    # that is thrown away costs nothing, and one that is kept saves ~0.15 s.
    speculate_after: float = 0.03
    # seconds of silence that end a turn whose transcript or sound says it is unfinished
    # ("What is the capital of ..."): the user is more likely to go on than to be done
    patient_silence: float = 1.5
    turn_model: str = "none"  # audio end-of-turn model for voice turns ("smart-turn-v3.2")
    # What user speech does while the assistant answers. "words": it is transcribed, and only
    # an interruption cancels the answer; backchannels ("uh-huh", "yeah"), the assistant's own
    # voice coming back and unclear single words do not (speechllm.turn.barge_in). "vad": any
    # speech cancels at once.
    barge_in: str = "words"
    backchannels: tuple[str, ...] = BACKCHANNELS  # phrases that never cancel ("words" only)
    barge_in_language: str | None = "en"  # what the judge hears users speak (None: detect)
    max_text_chars: int = 4096  # longest /v1/audio/speech input (OpenAI's cap)

    def __post_init__(self) -> None:
        for name in ("workers", "max_upload_bytes", "max_audio_seconds", "idle_timeout",
                     "end_silence", "max_text_chars", "patient_silence"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.barge_in not in ("words", "vad"):
            raise ValueError(f"barge_in must be 'words' or 'vad', got {self.barge_in!r}")
        self.timing()  # the turn timing must hold together

    def timing(self) -> TurnTiming:
        """Voice sessions' turn timing until a session asks for its own."""
        return TurnTiming(self.vad_threshold, self.end_silence, self.patient_silence,
                          self.speculate_after)
