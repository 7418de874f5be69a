"""G.711 mu-law and A-law, the telephone codecs (8 kHz, one byte a sample), as numpy lookups.

The tables follow the ITU-T G.711 reference segment coding (the routines every telephony stack
and Python's old `audioop` use), so a byte means here what it means on the phone network.
Python 3.13 removed `audioop`; this module has no such dependency.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np

from speechllm.audio import Audio

RATE = 8000  # G.711's sample rate
Law = Literal["mulaw", "alaw"]
_SEG_U = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_A = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for seg, end in enumerate(ends):
        if value <= end:
            return seg
    return len(ends)


def _mulaw_byte(pcm: int) -> int:
    pcm >>= 2
    mask = 0xFF
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    pcm = min(pcm, 8159) + 0x21
    seg = _segment(pcm, _SEG_U)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask


def _alaw_byte(pcm: int) -> int:
    pcm >>= 3
    mask = 0xD5
    if pcm < 0:
        pcm, mask = -pcm - 1, 0x55
    seg = _segment(pcm, _SEG_A)
    if seg >= 8:
        return 0x7F ^ mask
    value = (seg << 4) | ((pcm >> (1 if seg < 2 else seg)) & 0xF)
    return value ^ mask


def _mulaw_linear(byte: int) -> int:
    u = ~byte & 0xFF
    t = (((u & 0xF) << 3) + 0x84) << ((u & 0x70) >> 4)
    return 0x84 - t if u & 0x80 else t - 0x84


def _alaw_linear(byte: int) -> int:
    a = byte ^ 0x55
    t = (a & 0xF) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


@functools.cache
def _tables(law: Law) -> tuple[np.ndarray, np.ndarray]:
    """(16-bit sample + 32768 -> byte, byte -> 16-bit sample), built on first use (~0.1 s,
    kept off the server's start)."""
    to_byte, to_linear = (_mulaw_byte, _mulaw_linear) if law == "mulaw" else \
        (_alaw_byte, _alaw_linear)
    return (np.array([to_byte(v - 32768) for v in range(65536)], np.uint8),
            np.array([to_linear(b) for b in range(256)], np.int16))


def encode(pcm16: np.ndarray, law: Law = "mulaw") -> bytes:
    """16-bit samples (int16) -> G.711 bytes."""
    return bytes(_tables(law)[0][pcm16.astype(np.int32) + 32768])


def encode_audio(audio: Audio, law: Law = "mulaw") -> bytes:
    """Audio at any rate -> 8 kHz G.711 bytes."""
    return encode(np.frombuffer(audio.resample(RATE).to_pcm16(), "<i2"), law)


def decode(data: bytes, law: Law = "mulaw") -> np.ndarray:
    """G.711 bytes -> 16-bit samples (int16)."""
    return _tables(law)[1][np.frombuffer(data, np.uint8)]
