"""Acoustic tokens trained here: residual vector quantisation of log-mel frames.

Frames: 80-bin log-mel of 16 kHz audio, 1024-point FFT, hop 256 (62.5 frames/s). Each of Q
stages is a k-means codebook (scikit-learn) fitted on what the stages before it left over;
a frame's codes are its nearest centroid at every stage. Bitrate = 62.5 * Q * log2(K): 4 kbit/s
at the default Q=8, K=256.

Decoding turns the summed centroids back into a mel spectrogram, then into a waveform with
Griffin-Lim (librosa): the baseline decoder, with no training and no weights; or, when the
folder holds one in `vocoder/` (`speechllm tokens train-vocoder`), with the small neural
vocoder of `speechllm.tokens.vocoder`, the quality option.

Saved as a folder: `config.json` + `rvq.npz` (+ `vocoder/`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechllm._optional import require
from speechllm.audio import Audio
from speechllm.errors import ModelError
from speechllm.folders import opening, read_config, write_config
from speechllm.tokens.base import Codes, TokenInfo
from speechllm.tokens.mel import MelConfig, griffin_lim, log_mel


@dataclass(frozen=True)
class RVQConfig:
    stages: int = 8  # 4 kbit/s with k=256: the default bitrate (docs/tokens.md)
    k: int = 256
    mel: MelConfig = field(default_factory=MelConfig)
    griffin_lim_iters: int = 48

    def __post_init__(self) -> None:
        if not 1 <= self.stages <= 32:
            raise ValueError(f"stages must be from 1 to 32, got {self.stages}")
        if not 2 <= self.k <= 65536:
            raise ValueError(f"k must be from 2 to 65536, got {self.k}")


class MelRVQ:
    """Tokenizer and Griffin-Lim detokenizer over residual-quantised log-mel frames."""

    def __init__(self, config: RVQConfig, codebooks: np.ndarray, vocoder: Any = None) -> None:
        self.config = config
        self.vocoder = vocoder  # a MelVocoder, or None for Griffin-Lim
        self.codebooks = codebooks.astype(np.float32)  # (stages, k, n_mels)
        self._norms = (self.codebooks ** 2).sum(axis=2)
        rate = config.mel.frame_rate
        self.info = TokenInfo(f"mel-rvq-{config.stages}x{config.k}", config.mel.sample_rate,
                              (rate,) * config.stages, config.k)

    def quantize(self, frames: np.ndarray) -> np.ndarray:
        """(T, n_mels) -> codes (stages, T)."""
        residual = frames.astype(np.float32).copy()
        codes = np.empty((self.config.stages, len(frames)), np.int64)
        for s, book in enumerate(self.codebooks):
            d = self._norms[s][None, :] - 2.0 * residual @ book.T
            codes[s] = d.argmin(axis=1)
            residual -= book[codes[s]]
        return codes

    def dequantize(self, codes: Codes) -> np.ndarray:
        """Codes -> (T, n_mels) frames (the sum of each stage's centroid)."""
        if len(codes) > self.config.stages:
            raise ValueError(f"{len(codes)} codebooks given; this tokenizer has "
                             f"{self.config.stages}")
        frames = np.zeros((len(codes[0]), self.config.mel.n_mels), np.float32)
        for s, c in enumerate(codes):  # fewer stages decode at a lower bitrate
            c = np.asarray(c, np.int64)
            if c.size and (c.min() < 0 or c.max() >= self.config.k):
                raise ValueError(f"codebook {s}: codes must be in [0, {self.config.k})")
            frames += self.codebooks[s][c]
        return frames

    def encode(self, audio: Audio) -> Codes:
        return tuple(self.quantize(log_mel(audio, self.config.mel)))

    def decode(self, codes: Codes) -> Audio:
        if self.vocoder is not None:
            return self.vocoder(self.dequantize(codes))
        return griffin_lim(self.dequantize(codes), self.config.mel,
                           self.config.griffin_lim_iters)

    @classmethod
    def fit(cls, audios: Sequence[Audio], config: RVQConfig | None = None, seed: int = 0,
            progress: Callable[[int, int], None] | None = None) -> MelRVQ:
        cluster = require("sklearn.cluster", "tokens")
        config = config or RVQConfig()
        frames = []
        for n, a in enumerate(audios):
            frames.append(log_mel(a, config.mel))
            if progress and (n + 1) % 50 == 0:
                progress(n + 1, len(audios))
        x = np.concatenate(frames)
        if len(x) < config.k:
            raise ValueError(f"{len(x)} frames cannot fit {config.k} codes; give more audio")
        rng = np.random.default_rng(seed)
        if len(x) > 150_000:
            x = x[rng.choice(len(x), 150_000, replace=False)]
        residual = x.copy()
        books = []
        for stage in range(config.stages):
            km = cluster.MiniBatchKMeans(n_clusters=config.k, random_state=seed + stage,
                                         n_init=3, batch_size=4096, max_iter=200)
            km.fit(residual)
            book = km.cluster_centers_.astype(np.float32)
            residual -= book[km.predict(residual)]
            books.append(book)
        return cls(config, np.stack(books))

    def save(self, folder: str | os.PathLike[str]) -> Path:
        out = write_config(folder, asdict(self.config), "mel-rvq")
        np.savez(out / "rvq.npz", codebooks=self.codebooks)
        if self.vocoder is not None:
            self.vocoder.save(out / "vocoder")
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> MelRVQ:
        with opening(folder, "RVQ tokenizer") as path:
            raw = read_config(path, "mel-rvq")
            config = RVQConfig(**{**raw, "mel": MelConfig(**raw["mel"])})
            books = np.load(path / "rvq.npz")["codebooks"]
        if books.shape != (config.stages, config.k, config.mel.n_mels):
            raise ModelError(f"{path}: codebooks of shape {books.shape} do not match the config")
        vocoder = None
        if (path / "vocoder").is_dir():
            from speechllm.tokens.vocoder import attached
            vocoder = attached(path, config.mel)
        return cls(config, books, vocoder)
