"""Pretrained neural codecs behind `AudioTokenizer` / `AudioDetokenizer`, from weights on disk.

- EnCodec, Mimi and DAC through transformers (`EncodecModel`, `MimiModel`, `DacModel`): a
  local Hugging Face folder.
- SNAC through the `snac` package: a folder with `config.json` and `pytorch_model.bin`.
  Its codebooks run at different rates (coarse to fine), which `Codes` allows.

Nothing is downloaded: these weights cannot be had offline here, so the tests build each
codec from a small randomly initialised config of its real architecture, save it in the real
layout and load it through these classes (docs/tokens.md says so).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from speechllm._optional import require
from speechllm.audio import Audio
from speechllm.errors import ModelError
from speechllm.tokens.base import Codes, TokenInfo

KINDS = ("encodec", "mimi", "dac")


class TransformersCodec:
    """EnCodec, Mimi or DAC (transformers). `quantizers` picks the bitrate (None: all)."""

    def __init__(self, model: str | os.PathLike[str] | Any, quantizers: int | None = None
                 ) -> None:
        torch = require("torch", "latent")
        transformers = require("transformers", "latent")
        if isinstance(model, str | os.PathLike):
            folder = Path(model)
            try:
                kind = json.loads((folder / "config.json").read_text()).get("model_type")
            except (OSError, json.JSONDecodeError) as exc:
                raise ModelError(f"{folder}: not a codec folder ({exc})") from None
            if kind not in KINDS:
                raise ModelError(f"{folder}: model_type {kind!r} is not one of {KINDS}")
            try:
                model = transformers.AutoModel.from_pretrained(str(folder),
                                                               local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ModelError(f"cannot load {kind} from {folder}: {exc}") from None
        self.model = model.eval()
        self.kind: str = self.model.config.model_type
        if self.kind not in KINDS:
            raise ModelError(f"model_type {self.kind!r} is not one of {KINDS}")
        self._torch = torch
        cfg = self.model.config
        self.sample_rate = int(cfg.sampling_rate)
        self.quantizers = quantizers
        # The codebooks in use depend on the bitrate asked for: read them off a probe.
        probe = self._encode(np.zeros(self.sample_rate, np.float32))
        rate = getattr(cfg, "frame_rate", None) or self.sample_rate / cfg.hop_length
        self.info = TokenInfo(f"{self.kind}-{probe.shape[0]}q", self.sample_rate,
                              (float(rate),) * probe.shape[0], int(cfg.codebook_size))

    def _encode(self, samples: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.array(samples, np.float32))[None, None, :]  # writable copy
        with torch.inference_mode():
            if self.kind == "encodec":
                bandwidth = None
                if self.quantizers is not None:
                    per = self.model.config.frame_rate * np.log2(self.model.config.codebook_size)
                    bandwidth = self.quantizers * per / 1000.0
                    if bandwidth not in self.model.config.target_bandwidths:
                        raise ValueError(f"EnCodec offers bandwidths "
                                         f"{self.model.config.target_bandwidths} kbps; "
                                         f"{self.quantizers} quantizers is {bandwidth:g}")
                codes = self.model.encode(x, bandwidth=bandwidth).audio_codes[0, 0]
            elif self.kind == "mimi":
                codes = self.model.encode(x, num_quantizers=self.quantizers).audio_codes[0]
            else:
                codes = self.model.encode(x, n_quantizers=self.quantizers).audio_codes[0]
        return np.asarray(codes.cpu().numpy(), np.int64)

    def encode(self, audio: Audio) -> Codes:
        return tuple(self._encode(audio.resample(self.sample_rate).samples))

    def decode(self, codes: Codes) -> Audio:
        torch = self._torch
        c = torch.from_numpy(np.stack([np.asarray(x, np.int64) for x in codes]))
        with torch.inference_mode():
            if self.kind == "encodec":
                y = self.model.decode(c[None, None], [None]).audio_values
            elif self.kind == "mimi":
                y = self.model.decode(c[None]).audio_values
            else:
                y = self.model.decode(audio_codes=c[None]).audio_values
        return Audio(np.clip(y.reshape(-1).float().numpy(), -1.0, 1.0), self.sample_rate)


class SNACCodec:
    """SNAC (multi-scale codes) from a folder with config.json and pytorch_model.bin."""

    def __init__(self, model: str | os.PathLike[str] | Any) -> None:
        torch = require("torch", "latent")
        snac = require("snac", "tokens")
        if isinstance(model, str | os.PathLike):
            folder = Path(model)
            if not (folder / "config.json").is_file() or not (
                    folder / "pytorch_model.bin").is_file():
                raise ModelError(f"{folder}: a SNAC folder holds config.json and "
                                 "pytorch_model.bin")
            try:
                model = snac.SNAC.from_pretrained(str(folder))
            except (OSError, RuntimeError, ValueError, TypeError) as exc:
                raise ModelError(f"cannot load SNAC from {folder}: {exc}") from None
        self.model = model.eval()
        self._torch = torch
        self.sample_rate = int(self.model.sampling_rate)
        hop = int(np.prod(self.model.encoder_rates))
        strides = [int(s) for s in self.model.vq_strides]
        self.info = TokenInfo(f"snac-{len(strides)}", self.sample_rate,
                              tuple(self.sample_rate / hop / s for s in strides),
                              int(self.model.codebook_size))

    def encode(self, audio: Audio) -> Codes:
        torch = self._torch
        x = torch.from_numpy(np.array(audio.resample(self.sample_rate).samples))[None, None, :]
        with torch.inference_mode():
            codes = self.model.encode(x)
        return tuple(np.asarray(c[0].cpu().numpy(), np.int64) for c in codes)

    def decode(self, codes: Codes) -> Audio:
        torch = self._torch
        with torch.inference_mode():
            y = self.model.decode([torch.from_numpy(np.asarray(c, np.int64))[None]
                                   for c in codes])
        return Audio(np.clip(y.reshape(-1).float().numpy(), -1.0, 1.0), self.sample_rate)
