"""Semantic units: k-means over Whisper encoder states (HuBERT-style units, learned here).

No HuBERT weights install offline, so the units come from the embedded Whisper encoder
(CTranslate2): its states (50/s) are mean-pooled over `stride` frames (25 units/s by default),
standardised, and assigned to the nearest of k centroids fitted with scikit-learn's
mini-batch k-means. `dedup` collapses repeats, as unit LMs usually train on.

Saved as a folder: `config.json` + `units.npz` (centroids and the standardisation).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from speechllm._optional import require
from speechllm.audio import Audio
from speechllm.errors import AudioError, ModelError
from speechllm.folders import opening, read_config, write_config
from speechllm.tokens.base import Codes, TokenInfo

STATE_RATE = 50


@dataclass(frozen=True)
class UnitsConfig:
    encoder: str = "whisper-base"  # embedded name or CTranslate2 Whisper folder
    k: int = 200
    stride: int = 2  # encoder states pooled per unit: 50/s -> 25/s
    window_seconds: float = 10.0  # encoder window; longer audio is cut into windows
    # Each piece in the shortest of window, window/2, window/4, ... (not under
    # `shortest_window`) that holds it, rather than padded to the full window: a 0.8 s clip
    # costs a 2 s window's encoder work instead of a 4 s one's. Other states, so other units
    # than fixed windows: off for tokenizers saved before it existed. Whisper's states from a
    # 1 s window kept the digits apart worse (a 1-NN proxy on FSDD: 0.847 against 0.903 at
    # 4 s and 0.907 at 2 s; docs/token_digits/results.md#recipe_speed), hence the 2 s floor.
    fitted_windows: bool = False
    shortest_window: float = 2.0

    def __post_init__(self) -> None:
        if not 2 <= self.k <= 65536:
            raise ValueError(f"k must be from 2 to 65536, got {self.k}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if not 1.0 <= self.window_seconds <= 30.0:
            raise ValueError(f"window_seconds must be in [1, 30], got {self.window_seconds}")
        if self.shortest_window < 1.0:
            raise ValueError(f"shortest_window must be at least 1 s, got {self.shortest_window}")

    def window_for(self, seconds: float) -> float:
        """The encoder window a piece of `seconds` is padded to."""
        window = self.window_seconds
        if self.fitted_windows:
            while window / 2 >= max(self.shortest_window, seconds):
                window /= 2
        return window


class UnitFeatures:
    """Pooled Whisper encoder states of any length of audio."""

    def __init__(self, config: UnitsConfig) -> None:
        from speechllm.encoders import CT2WhisperEncoder

        self.config = config
        self.encoder = CT2WhisperEncoder(config.encoder, config.window_seconds)

    def __call__(self, audios: Sequence[Audio]) -> list[np.ndarray]:
        """(T_i, D) per audio, T_i = ceil(duration * 50 / stride)."""
        w, stride = self.config.window_seconds, self.config.stride
        pieces: list[tuple[int, Audio]] = []
        for n, audio in enumerate(audios):
            if len(audio) == 0:
                raise AudioError("audio has 0 samples")
            a = audio.resample(16000)
            for start in np.arange(0.0, a.duration, w):
                pieces.append((n, a.slice(float(start), float(start) + w)))
        by_window: dict[float, list[int]] = {}
        for i, (_, piece) in enumerate(pieces):
            by_window.setdefault(self.config.window_for(piece.duration), []).append(i)
        done: list[np.ndarray | None] = [None] * len(pieces)
        for window, group in by_window.items():
            for b in range(0, len(group), 8):
                batch = group[b:b + 8]
                states, lengths = self.encoder.encode([pieces[i][1] for i in batch], window)
                for i, s, length in zip(batch, states, lengths, strict=True):
                    done[i] = s[: int(length)]
        # each audio's pieces back in time order, whatever windows they were batched by
        per_audio: list[list[np.ndarray]] = [[] for _ in audios]
        for (n, _), s in zip(pieces, done, strict=True):
            assert s is not None
            per_audio[n].append(s)
        return [pool_states(np.concatenate(parts), stride) for parts in per_audio]


def grouped_states(states: np.ndarray, stride: int) -> np.ndarray:
    """(T, D) 50/s states in groups of `stride`: (ceil(T / stride), stride, D), the last
    group filled with the last state (rather than zeros)."""
    pad = (-len(states)) % stride
    if pad:
        states = np.concatenate([states, np.repeat(states[-1:], pad, axis=0)])
    return states.reshape(-1, stride, states.shape[1])


def pool_states(states: np.ndarray, stride: int) -> np.ndarray:
    """(T, D) 50/s states mean-pooled `stride` at a time: (ceil(T / stride), D)."""
    return grouped_states(states, stride).mean(axis=1)


class KMeansUnits:
    """A fitted unit tokenizer: `encode` gives one codebook of k units at 50/stride per second."""

    def __init__(self, config: UnitsConfig, centroids: np.ndarray, mean: np.ndarray,
                 std: np.ndarray) -> None:
        self.config = config
        self.centroids = centroids.astype(np.float32)
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        self._features: UnitFeatures | None = None
        self._norms = (self.centroids ** 2).sum(axis=1)
        self.info = TokenInfo(f"units-k{config.k}", 16000,
                              (STATE_RATE / config.stride,), config.k)

    @property
    def features(self) -> UnitFeatures:
        if self._features is None:
            self._features = UnitFeatures(self.config)
        return self._features

    def assign(self, feats: np.ndarray) -> np.ndarray:
        x = (feats - self.mean) / self.std
        # nearest centroid by squared distance, without forming the (T, k, D) difference
        d = self._norms[None, :] - 2.0 * x @ self.centroids.T
        return d.argmin(axis=1).astype(np.int64)

    def encode(self, audio: Audio) -> Codes:
        return (self.assign(self.features([audio])[0]),)

    def encode_many(self, audios: Sequence[Audio]) -> list[np.ndarray]:
        return [self.assign(f) for f in self.features(audios)]

    @classmethod
    def fit(cls, audios: Sequence[Audio], config: UnitsConfig | None = None, seed: int = 0,
            progress: Callable[[int, int], None] | None = None) -> KMeansUnits:
        """Fit k centroids on the pooled states of `audios` (all frames, or a 200k sample)."""
        return cls.fit_and_encode(audios, config, seed, progress)[0]

    @classmethod
    def fit_and_encode(cls, audios: Sequence[Audio], config: UnitsConfig | None = None,
                       seed: int = 0, progress: Callable[[int, int], None] | None = None
                       ) -> tuple[KMeansUnits, list[np.ndarray]]:
        """`fit`, and the units of `audios` by the fitted centroids (from the states the fit
        encoded: no second pass through Whisper)."""
        require("sklearn.cluster", "tokens")  # a missing extra is named before the encoding
        config = config or UnitsConfig()
        features = UnitFeatures(config)
        chunks = []
        for start in range(0, len(audios), 32):
            chunks += features(audios[start:start + 32])
            if progress:
                progress(min(start + 32, len(audios)), len(audios))
        tok = cls.fit_features(chunks, config, seed)
        tok._features = features
        return tok, [tok.assign(f) for f in chunks]

    @classmethod
    def fit_features(cls, features: Sequence[np.ndarray], config: UnitsConfig,
                     seed: int = 0) -> KMeansUnits:
        """Fit k centroids on pooled states already computed (`config.stride` per unit)."""
        cluster = require("sklearn.cluster", "tokens")
        x = np.concatenate(list(features))
        if len(x) < config.k:
            raise ValueError(f"{len(x)} frames cannot make {config.k} units; give more audio "
                             "or a smaller k")
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-5
        x = (x - mean) / std
        rng = np.random.default_rng(seed)
        if len(x) > 200_000:
            x = x[rng.choice(len(x), 200_000, replace=False)]
        km = cluster.MiniBatchKMeans(n_clusters=config.k, random_state=seed, n_init=3,
                                     batch_size=4096, max_iter=200)
        km.fit(x)
        return cls(config, km.cluster_centers_, mean, std)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        out = write_config(folder, asdict(self.config), "kmeans-units")
        np.savez(out / "units.npz", centroids=self.centroids, mean=self.mean, std=self.std)
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> KMeansUnits:
        with opening(folder, "unit tokenizer") as path:
            raw = read_config(path, "kmeans-units")
            data = np.load(path / "units.npz")
            tok = cls(UnitsConfig(**raw), data["centroids"], data["mean"], data["std"])
        if tok.centroids.shape[0] != tok.config.k:
            raise ModelError(f"{path}: {tok.centroids.shape[0]} centroids but k={tok.config.k}")
        return tok

