"""The one audio value type: float32 mono samples plus a sample rate.

Loading accepts WAV, FLAC, OGG/Vorbis/Opus and MP3 (libsndfile through soundfile), downmixes
to mono and resamples with soxr. Every way audio can be unusable becomes an `AudioError` with a
one-line message; nothing else escapes from here.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from speechllm.errors import AudioError

DEFAULT_MAX_SECONDS = 1200.0
"""Longest audio accepted by default (20 minutes); override with SPEECHLLM_MAX_AUDIO_SECONDS."""
# Decoded samples (all channels together) a load accepts per second of its cap: 48 kHz stereo.
# A header may declare 8 channels at 192 kHz: the cap in seconds alone would then let a 1 MB
# FLAC of silence decode to gigabytes.
MAX_SAMPLES_PER_SECOND = 48000 * 2
BLOCK_FRAMES = 1 << 16  # frames decoded at a time: 4 MB at 8 channels


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
    with _sound_file(source) as (f, name):
        mono, native_rate = _decode_mono(f, name, cap, sample_rate)
    if len(mono) == 0:
        raise AudioError(f"{name} holds no audio samples (zero length)")
    return Audio(mono, sample_rate or native_rate)


def probe(source: str | os.PathLike[str] | bytes, max_seconds: float | None = None) -> None:
    """What `load` checks before decoding (readable, not empty, within the caps), from the
    header alone: lets a server refuse bad audio at once and decode it later, when the
    models are free."""
    cap = max_seconds_default() if max_seconds is None else max_seconds
    with _sound_file(source) as (f, name):
        _check_header(f, name, cap)


@contextlib.contextmanager
def _sound_file(source: str | os.PathLike[str] | bytes) -> Iterator[tuple[Any, str]]:
    """The open soundfile and the name errors use. What is plainly no file, and whatever
    libsndfile cannot read, becomes an AudioError."""
    handle: io.BytesIO | str
    if isinstance(source, bytes | bytearray):
        if not source:
            raise AudioError("uploaded audio is empty (0 bytes)")
        handle, name = io.BytesIO(bytes(source)), "uploaded audio"
    else:
        path = Path(source)
        handle = name = str(path)
        if not path.exists():
            raise AudioError(f"{name}: no such file")
        if path.is_dir():
            raise AudioError(f"{name} is a directory, not an audio file")
        if path.stat().st_size == 0:
            raise AudioError(f"{name} is empty (0 bytes)")
    try:
        with sf.SoundFile(handle) as f:
            yield f, name
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{name} is not a readable audio file ({_reason(exc)})") from None


def _check_header(f: Any, name: str, cap: float) -> None:
    """Refuse, from the header, audio over the cap in seconds or in samples."""
    rate, frames, channels = int(f.samplerate), int(f.frames), int(f.channels)
    if frames > 0 and frames / rate > cap:
        raise AudioError(f"{name} is {frames / rate:.1f} s long; the cap is {cap:g} s "
                         "(raise it with SPEECHLLM_MAX_AUDIO_SECONDS)")
    allowed = int(cap * MAX_SAMPLES_PER_SECOND)
    if frames * channels > allowed:
        raise AudioError(f"{name} declares {channels} channels at {rate} Hz for "
                         f"{frames / rate:.1f} s: {frames * channels} samples, over the "
                         f"{allowed} that {cap:g} s allows (48 kHz stereo)")


def _reason(exc: Exception) -> str:
    """libsndfile's complaint, without the file object's repr (a heap address) in it."""
    reason = getattr(exc, "error_string", None) or str(exc).split("\n")[0]
    return re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the file", str(reason))


def _decode_mono(f: Any, name: str, cap: float, sample_rate: int | None
                 ) -> tuple[np.ndarray, int]:
    """Decode block by block, each downmixed and resampled as it comes, so memory is bounded
    by the cap in seconds at the output rate, whatever the header declares."""
    rate, channels = int(f.samplerate), int(f.channels)
    _check_header(f, name, cap)
    allowed = int(cap * MAX_SAMPLES_PER_SECOND)
    target = sample_rate or rate
    stream = None if target == rate else soxr.ResampleStream(rate, target, 1, dtype="float32",
                                                             quality="HQ")
    pieces, seen = [], 0
    for block in f.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
        seen += len(block)
        if seen / rate > cap or seen * channels > allowed:  # a header that understated it
            raise AudioError(f"{name} is longer than the {cap:g} s cap")
        mono = block.mean(axis=1) if channels > 1 else block[:, 0].copy()
        if not np.all(np.isfinite(mono)):
            raise AudioError(f"{name} contains NaN or infinite samples")
        pieces.append(mono if stream is None else stream.resample_chunk(mono))
    if stream is not None:
        pieces.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    out = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if stream is not None:
        np.clip(out, -1.0, 1.0, out=out)
    return out.astype(np.float32, copy=False), rate


def save(audio: Audio, path: str | os.PathLike[str]) -> Path:
    """Write `audio` to `path`; the format follows the extension (.wav, .flac, .ogg, .mp3)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        sf.write(str(out), audio.samples, audio.sample_rate)
    except (sf.LibsndfileError, TypeError, ValueError) as exc:
        raise AudioError(f"cannot write {out}: {exc}") from None
    return out
