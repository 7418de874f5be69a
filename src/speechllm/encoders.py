"""Speech encoders: audio -> hidden states (B, T, D) plus each item's valid length.

- `CT2WhisperEncoder`: Whisper's encoder through CTranslate2 (int8, frozen, fast); the embedded
  whisper-base / whisper-tiny.en or any CTranslate2 Whisper directory.
- `HFWhisperEncoder`: Whisper's encoder in transformers (PyTorch), trainable, for users with
  Hugging Face Whisper weights on disk (or a `WhisperConfig` for a randomly initialised one).

Both see the same input: 80-bin log-mel frames (100/s) padded to the window (30 s, as Whisper
was trained); states come at 50 frames/s and are cut to the audio's own length.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from speechllm import models
from speechllm._optional import require
from speechllm.audio import Audio
from speechllm.errors import AudioError, ModelError

RATE = 16000
MEL_RATE = 100  # log-mel frames per second
STATE_RATE = 50  # encoder states per second (the encoder's stride-2 conv halves the mel rate)


class SpeechEncoder(Protocol):
    dim: int  # D, the size of one state
    trainable: bool  # whether `encode` can carry gradients (PyTorch) for unfreezing
    module: Any  # the PyTorch module whose weights train when unfrozen (None if frozen)

    def encode(self, audios: Sequence[Audio]) -> tuple[Any, np.ndarray]:
        """(states (B, T, D), lengths (B,)): states past an item's length are padding."""
        ...


def state_length(seconds: float, window_seconds: float) -> int:
    """Encoder states that cover `seconds` of audio (at most the window's)."""
    return max(1, min(math.ceil(min(seconds, window_seconds) * STATE_RATE),
                      int(window_seconds * STATE_RATE)))


def log_mel(audios: Sequence[Audio], window_seconds: float = 30.0,
            n_mels: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """(mel (B, n_mels, window*100) float32, lengths in encoder states (B,)). Audio longer than
    the window is refused rather than silently cut."""
    fe = require("faster_whisper.feature_extractor", "asr").FeatureExtractor(feature_size=n_mels)
    frames = int(window_seconds * MEL_RATE)
    mels, lengths = [], []
    for audio in audios:
        if len(audio) == 0:
            raise AudioError("audio has 0 samples")
        if audio.duration > window_seconds + 1e-6:
            raise AudioError(f"audio of {audio.duration:.1f} s is longer than the encoder "
                             f"window of {window_seconds:g} s; split it first")
        samples = np.ascontiguousarray(audio.resample(RATE).samples)
        mel = fe(samples, padding=frames * 160 - len(samples))[:, :frames]
        if mel.shape[1] < frames:
            mel = np.pad(mel, ((0, 0), (0, frames - mel.shape[1])))
        mels.append(mel.astype(np.float32))
        lengths.append(state_length(audio.duration, window_seconds))
    return np.stack(mels), np.array(lengths, np.int64)


class CT2WhisperEncoder:
    """The Whisper encoder through CTranslate2: frozen, quantised, numpy out."""

    trainable = False
    module = None  # no PyTorch weights

    def __init__(self, model: str | os.PathLike[str] = "whisper-base",
                 window_seconds: float = 30.0, compute_type: str = "int8",
                 cpu_threads: int = 0) -> None:
        ct2 = require("ctranslate2", "asr")
        path = models.resolve(model, "asr")
        if not (Path(path) / "model.bin").is_file():
            raise ModelError(f"{path} is not a CTranslate2 Whisper directory (no model.bin)")
        try:
            self._model = ct2.models.Whisper(str(path), device="cpu", compute_type=compute_type,
                                             intra_threads=cpu_threads or (os.cpu_count() or 1))
        except Exception as exc:
            raise ModelError(f"cannot load Whisper model from {path}: {exc}") from None
        self._ct2 = ct2
        self.name = str(model)
        self.window_seconds = window_seconds
        self.n_mels = int(self._model.n_mels) if hasattr(self._model, "n_mels") else 80
        probe = self._encode(np.zeros((1, self.n_mels, int(window_seconds * MEL_RATE)),
                                      np.float32))
        self.dim = int(probe.shape[-1])

    def _encode(self, mel: np.ndarray) -> np.ndarray:
        out = self._model.encode(self._ct2.StorageView.from_array(np.ascontiguousarray(mel)),
                                 to_cpu=True)
        return np.array(out, dtype=np.float32)

    def encode(self, audios: Sequence[Audio], window_seconds: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(states (B, T, D), lengths (B,)), the audio padded to `window_seconds` (default:
        this encoder's window; Whisper's encoder takes any window up to 30 s)."""
        mel, lengths = log_mel(audios, window_seconds or self.window_seconds, self.n_mels)
        states = self._encode(mel)
        return states[:, : int(lengths.max())], lengths


class HFWhisperEncoder:
    """Whisper's encoder in transformers: from a local Hugging Face Whisper directory (`model`),
    or randomly initialised from a `transformers.WhisperConfig` (`config`). Trainable."""

    trainable = True

    def __init__(self, model: str | os.PathLike[str] | None = None, config: Any = None) -> None:
        transformers = require("transformers", "latent")
        if (model is None) == (config is None):
            raise ValueError("give either a local Whisper directory or a WhisperConfig")
        if model is not None:
            if not Path(model).is_dir():
                raise ModelError(f"{model}: not a local Hugging Face Whisper directory")
            full = transformers.WhisperModel.from_pretrained(str(model), local_files_only=True)
            self.module = full.get_encoder()
        else:
            self.module = transformers.models.whisper.modeling_whisper.WhisperEncoder(config)
        cfg = self.module.config
        self.dim = int(cfg.d_model)
        self.n_mels = int(cfg.num_mel_bins)
        # transformers' Whisper encoder takes exactly max_source_positions * 2 mel frames, so
        # the window is fixed by the config (30 s for released checkpoints).
        self.window_seconds = cfg.max_source_positions / STATE_RATE
        self.name = str(model) if model is not None else "random-whisper-encoder"

    def encode(self, audios: Sequence[Audio]) -> tuple[Any, np.ndarray]:
        torch = require("torch", "latent")
        mel, lengths = log_mel(audios, self.window_seconds, self.n_mels)
        param = next(self.module.parameters())
        states = self.module(torch.from_numpy(mel).to(param.device, param.dtype)).last_hidden_state
        return states[:, : int(lengths.max())], lengths


def is_hf_whisper(model: str | os.PathLike[str]) -> bool:
    """Whether `model` is a local Hugging Face Whisper folder (not a CTranslate2 one)."""
    folder = Path(model).expanduser()
    if not (folder / "config.json").is_file() or (folder / "model.bin").is_file():
        return False
    try:
        return bool(json.loads((folder / "config.json").read_text()).get("model_type")
                    == "whisper")
    except (OSError, json.JSONDecodeError):
        return False


def make_encoder(model: str | os.PathLike[str], window_seconds: float) -> SpeechEncoder:
    """The transformers encoder for a Hugging Face Whisper folder (trainable; its window is
    fixed by its config), else CTranslate2 (an embedded name or a CTranslate2 folder)."""
    if is_hf_whisper(model):
        return HFWhisperEncoder(model=model)
    return CT2WhisperEncoder(model, window_seconds)
