"""Protocols for discrete audio tokens.

`Codes` are one integer array per codebook, oldest frame first. Residual quantisers (the
mel RVQ, EnCodec, Mimi, DAC) have equal-length codebooks at one rate; SNAC's codebooks run at
different rates, which is why codes are a tuple of arrays rather than one matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from speechllm.audio import Audio
from speechllm.registry import Registry

Codes = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class TokenInfo:
    name: str
    sample_rate: int  # the audio rate the tokenizer works at
    rates: tuple[float, ...]  # frames per second of each codebook
    vocab: int  # codes per codebook

    @property
    def codebooks(self) -> int:
        return len(self.rates)

    @property
    def bitrate(self) -> float:
        """Bits per second if each code is stored in log2(vocab) bits."""
        return sum(self.rates) * math.log2(self.vocab)


class AudioTokenizer(Protocol):
    info: TokenInfo

    def encode(self, audio: Audio) -> Codes:
        """Codes for `audio` (resampled to `info.sample_rate` as needed)."""
        ...


class AudioDetokenizer(Protocol):
    info: TokenInfo

    def decode(self, codes: Codes) -> Audio:
        """A waveform for `codes`."""
        ...


def dedup(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Collapse runs of a repeated unit (HuBERT-style): (units, run lengths)."""
    units = np.asarray(units)
    if units.size == 0:
        return units, np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
    lengths = np.diff(np.r_[starts, units.size])
    return units[starts], lengths


# a tokenizer folder's config.json "kind" (or "model_type") -> loader(folder)
TOKENIZERS: Registry[Callable[[Path], Any]] = Registry("tokenizer kind")
TOKENIZERS.register("kmeans-units", "speechllm.tokens.semantic:KMeansUnits.load")
TOKENIZERS.register("unit2speech", "speechllm.tokens.unit2speech:UnitToSpeech.load")
TOKENIZERS.register("mel-rvq", "speechllm.tokens.acoustic:MelRVQ.load")
for _codec in ("encodec", "mimi", "dac"):  # Hugging Face transformers codecs
    TOKENIZERS.register(_codec, "speechllm.tokens.codecs:TransformersCodec")
TOKENIZERS.register("snac", "speechllm.tokens.codecs:SNACCodec")
