"""The one audio value type: float32 mono samples plus a sample rate.

Loading accepts WAV, FLAC, OGG/Vorbis/Opus and MP3 (libsndfile through soundfile), downmixes
to mono and resamples with soxr. Every way audio can be unusable becomes an `AudioError` with a
one-line message; nothing else escapes from here.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from speechllm.errors import AudioError

DEFAULT_MAX_SECONDS = 1200.0
"""Longest audio accepted by default (20 minutes); override with SPEECHLLM_MAX_AUDIO_SECONDS."""


def max_seconds_default() -> float:
    raw = os.environ.get("SPEECHLLM_MAX_AUDIO_SECONDS")
    if raw is None:
        return DEFAULT_MAX_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise AudioError(f"SPEECHLLM_MAX_AUDIO_SECONDS={raw!r} is not a number") from None
    if value <= 0:
        raise AudioError(f"SPEECHLLM_MAX_AUDIO_SECONDS must be positive, got {value}")
    return value


@dataclass(frozen=True, eq=False)
class Audio:
    """Mono float32 samples in [-1, 1] at `sample_rate` Hz. Treat `samples` as read-only."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise AudioError(f"sample rate must be positive, got {self.sample_rate}")
        samples = np.asarray(self.samples, dtype=np.float32)
        if samples.ndim != 1:
            raise AudioError(f"Audio holds mono samples (1-D); got shape {samples.shape}")
        if not np.all(np.isfinite(samples)):
            raise AudioError("audio contains NaN or infinite samples")
        samples.setflags(write=False)
        object.__setattr__(self, "samples", samples)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate

    def __len__(self) -> int:
        return len(self.samples)

    def resample(self, sample_rate: int) -> Audio:
        """This audio at another rate (soxr, high quality); itself when the rate already matches."""
        if sample_rate == self.sample_rate:
            return self
        out = soxr.resample(self.samples, self.sample_rate, sample_rate, quality="HQ")
        return Audio(np.clip(out, -1.0, 1.0), sample_rate)

    def slice(self, start: float, end: float | None = None) -> Audio:
        """The part between `start` and `end` seconds."""
        a = max(0, round(start * self.sample_rate))
        b = len(self.samples) if end is None else round(end * self.sample_rate)
        return Audio(self.samples[a:b], self.sample_rate)

    def to_pcm16(self) -> bytes:
        """Little-endian signed 16-bit PCM bytes (the format of WAV files and realtime APIs)."""
        return (np.clip(self.samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()

    @classmethod
    def from_pcm16(cls, data: bytes, sample_rate: int) -> Audio:
        if len(data) % 2:
            raise AudioError(f"16-bit PCM needs an even number of bytes, got {len(data)}")
        pcm = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        return cls(pcm, sample_rate)

    @classmethod
    def silence(cls, seconds: float, sample_rate: int = 16000) -> Audio:
        return cls(np.zeros(round(seconds * sample_rate), np.float32), sample_rate)

    @classmethod
    def concat(cls, parts: list[Audio]) -> Audio:
        if not parts:
            raise AudioError("nothing to concatenate")
        rate = parts[0].sample_rate
        return cls(np.concatenate([p.resample(rate).samples for p in parts]), rate)

    def to_wav_bytes(self) -> bytes:
        buf = io.BytesIO()
        sf.write(buf, self.samples, self.sample_rate, format="WAV", subtype="PCM_16")
        return buf.getvalue()


def load(
    source: str | os.PathLike[str] | bytes,
    sample_rate: int | None = 16000,
    max_seconds: float | None = None,
) -> Audio:
    """Read an audio file (path or bytes) as mono, resampled to `sample_rate` (None keeps it).

    Raises AudioError for a missing, empty, corrupt or non-audio file, or one longer than
    `max_seconds` (default: SPEECHLLM_MAX_AUDIO_SECONDS or 1200 s). The length is checked
    from the header before the samples are decoded, so an enormous file costs nothing.
    """
    cap = max_seconds_default() if max_seconds is None else max_seconds
    if isinstance(source, bytes | bytearray):
        name = "uploaded audio"
        if not source:
            raise AudioError("uploaded audio is empty (0 bytes)")
        handle: io.BytesIO | str = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        name = str(path)
        if not path.exists():
            raise AudioError(f"{name}: no such file")
        if path.is_dir():
            raise AudioError(f"{name} is a directory, not an audio file")
        if path.stat().st_size == 0:
            raise AudioError(f"{name} is empty (0 bytes)")
        handle = str(path)
    try:
        with sf.SoundFile(handle) as f:
            native_rate = f.samplerate
            frames = f.frames
            if frames > 0 and frames / native_rate > cap:
                raise AudioError(
                    f"{name} is {frames / native_rate:.1f} s long; the cap is {cap:g} s "
                    "(raise it with SPEECHLLM_MAX_AUDIO_SECONDS)"
                )
            data = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        reason = str(exc).split("\n")[0]
        raise AudioError(f"{name} is not a readable audio file ({reason})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{name} holds no audio samples (zero length)")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{name} contains NaN or infinite samples")
    audio = Audio(mono, native_rate)
    return audio if sample_rate is None else audio.resample(sample_rate)


def save(audio: Audio, path: str | os.PathLike[str]) -> Path:
    """Write `audio` to `path`; the format follows the extension (.wav, .flac, .ogg, .mp3)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        sf.write(str(out), audio.samples, audio.sample_rate)
    except (sf.LibsndfileError, TypeError, ValueError) as exc:
        raise AudioError(f"cannot write {out}: {exc}") from None
    return out
