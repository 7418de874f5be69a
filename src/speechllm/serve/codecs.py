"""Audio and transcript formats of the OpenAI audio API."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import soundfile as sf

from speechllm.asr.base import Segment
from speechllm.audio import Audio

# response_format -> (libsndfile format, subtype, media type); pcm is raw 24 kHz s16le, as
# OpenAI sends it
AUDIO_FORMATS: dict[str, tuple[str, str, str]] = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
    "opus": ("OGG", "OPUS", "audio/ogg"),
    "pcm": ("RAW", "PCM_16", "audio/pcm"),
}
PCM_RATE = 24000
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def audio_of_delta(event: Mapping[str, Any]) -> Audio:
    """The speech of a realtime `response.audio.delta` event (base64 PCM16 at its
    `sample_rate`), for the bridges that re-encode it."""
    return Audio.from_pcm16(base64.b64decode(event["delta"]), int(event["sample_rate"]))


def encode(audio: Audio, fmt: str) -> tuple[bytes, str]:
    """(bytes, media type) of `audio` in an OpenAI `response_format`."""
    container, subtype, media = AUDIO_FORMATS[fmt]
    if fmt == "pcm":
        return audio.resample(PCM_RATE).to_pcm16(), media
    if fmt == "opus" and audio.sample_rate not in OPUS_RATES:
        audio = audio.resample(24000)  # Opus runs at fixed rates only
    buf = io.BytesIO()
    sf.write(buf, audio.samples, audio.sample_rate, format=container, subtype=subtype)
    return buf.getvalue(), media


def _stamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(segments: Sequence[Segment]) -> str:
    return "".join(f"{n}\n{_stamp(s.start, ',')} --> {_stamp(s.end, ',')}\n{s.text.strip()}\n\n"
                   for n, s in enumerate(segments, 1))


def vtt(segments: Sequence[Segment]) -> str:
    return "WEBVTT\n\n" + "".join(
        f"{_stamp(s.start, '.')} --> {_stamp(s.end, '.')}\n{s.text.strip()}\n\n"
        for s in segments)


def verbose_segments(segments: Sequence[Segment]) -> list[dict[str, object]]:
    return [{"id": n, "seek": 0, "start": round(s.start, 3), "end": round(s.end, 3),
             "text": s.text, "tokens": [], "temperature": 0.0,
             "avg_logprob": s.avg_logprob, "compression_ratio": 0.0,
             "no_speech_prob": s.no_speech_prob} for n, s in enumerate(segments)]
