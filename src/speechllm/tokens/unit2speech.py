"""Unit-to-speech: semantic units -> log-mel frames (a small dilated-convolution network) ->
waveform (Griffin-Lim). It makes unit sequences audible, in the voice it was trained on.

Units arrive at 25/s; each becomes `upsample` mel frames (100 frames/s at hop 160). The
network sees every unit in context (about +-1 s), so coarticulation is learned, not stitched.
Trained here on speech the project synthesises (the Piper voice), with a plain L1 loss on
log-mel frames.

Saved as a folder: `config.json`, `unit2speech.safetensors`, and the unit tokenizer in
`units/`, so the folder both encodes (audio -> units) and decodes (units -> audio).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechllm._optional import require
from speechllm.audio import Audio
from speechllm.errors import MissingDependency, ModelError
from speechllm.folders import opening, read_config
from speechllm.lm import precision
from speechllm.tokens.base import Codes
from speechllm.tokens.fitting import fit
from speechllm.tokens.mel import MelConfig, griffin_lim, log_mel
from speechllm.tokens.semantic import KMeansUnits

try:
    import torch
    from torch import Tensor, nn
except ImportError as exc:  # this module is PyTorch through and through
    raise MissingDependency(f"torch is not installed ({exc}); install it with: "
                            "pip install 'speechllm[latent]'") from exc

MEL = MelConfig(sample_rate=16000, n_fft=1024, hop=160, n_mels=80)  # 100 frames/s


@dataclass(frozen=True)
class U2SConfig:
    k: int = 200
    upsample: int = 4  # mel frames per unit (25 units/s -> 100 frames/s; 2 x the units' stride)
    channels: int = 256
    layers: int = 8
    steps: int = 1500
    batch_size: int = 16
    crop_units: int = 100  # 4 s windows per training example
    lr: float = 2e-3
    griffin_lim_iters: int = 48
    # the start phase: the same units always give the same waveform, but another start
    # phase reads differently to an ASR judge (bench/token_tts.py --phases measures how much)
    griffin_lim_seed: int = 0
    # Each unit also enters as its k-means centroid (the Whisper states it stands for), so
    # units that sound alike start alike and a near miss by the token LM decodes to a near
    # sound; without it every unit is a free embedding learnt from its own frames only.
    centroid_inputs: bool = False
    # The blocks' dilations cycle 1, 2, 4, .. up to this: it sets how much context each frame
    # sees (8: about +-1.5 s, a whole command phrase; 4: +-0.8 s; 2: +-0.6 s; 1: +-0.4 s). The
    # wide default renders a token LM's units better (docs/tokens.md, "the context it sees").
    max_dilation: int = 8
    # Dropout on each block's output while training, against memorising the training clips'
    # exact unit sequences: with it the decoder renders fresh Piper clips' units closer to
    # their mel (L1 0.92 -> 0.83) and reads better to Whisper (docs/tokens.md, "dropout").
    # Only training sees it, so decoders saved before it existed load and decode unchanged.
    dropout: float = 0.2
    # How a training example is cut. "clips": one clip each (cropped to `crop_units` when
    # longer), the batch padded to its longest and the padding left out of the loss. "padded"
    # (until 2026-12-04): every example padded to `crop_units` and all of it scored; the
    # recipe's clips are about 1.3 s, so two thirds of each 4 s example was the last frame
    # repeated, and a step cost twice as much (docs/token_digits/results.md#recipe_speed).
    batching: str = "clips"
    # bfloat16 products while training ("auto": where the CPU has them in hardware; "bf16",
    # "off"): the weights stay float32 and decoding is float32 either way
    autocast: str = "off"

    @classmethod
    def for_units(cls, units: KMeansUnits, **changes: Any) -> U2SConfig:
        """Defaults fitted to a unit tokenizer: its k, its rate, 4 s training crops."""
        stride = units.config.stride
        return cls(**{"k": units.config.k, "upsample": 2 * stride, "crop_units": 50 * 4 // stride,
                      **changes})


class UnitToMel(nn.Module):
    def __init__(self, c: U2SConfig, centroids: np.ndarray | None = None) -> None:
        super().__init__()
        self.upsample = c.upsample
        self.embed = nn.Embedding(c.k, c.channels)
        self.centroid_proj: nn.Linear | None = None
        if c.centroid_inputs:
            if centroids is None or len(centroids) != c.k:
                raise ValueError("centroid_inputs needs the unit tokenizer's k centroids")
            # not saved with the network: the units/ folder beside it holds them
            self.register_buffer("centroids", torch.as_tensor(centroids, dtype=torch.float32),
                                 persistent=False)
            self.centroid_proj = nn.Linear(centroids.shape[1], c.channels)
        if c.max_dilation < 1 or c.max_dilation & (c.max_dilation - 1):
            raise ValueError(f"max_dilation must be a power of two, not {c.max_dilation}")
        cycle = c.max_dilation.bit_length()  # 8 -> 1, 2, 4, 8
        self.blocks = nn.ModuleList()
        for n in range(c.layers):
            dilation = 2 ** (n % cycle)
            self.blocks.append(nn.Sequential(
                nn.Conv1d(c.channels, c.channels, 5, padding=2 * dilation, dilation=dilation),
                nn.GELU(), nn.Conv1d(c.channels, c.channels, 1)))
        self.norms = nn.ModuleList(nn.GroupNorm(1, c.channels) for _ in range(c.layers))
        self.out = nn.Conv1d(c.channels, MEL.n_mels, 1)
        self.drop = nn.Dropout(c.dropout)  # on each block's output: saved weights keep their names

    def forward(self, units: Tensor, lengths: Tensor | None = None) -> Tensor:
        """units (B, T) -> log-mel (B, T * upsample, n_mels). The first half of the blocks
        runs at the unit rate, the rest at the frame rate.

        `lengths` (B,): each row's real units, the rest padding. Each row then comes out as
        it would alone: its padding is zero wherever a convolution reads it (as the edge of a
        clip decoded alone is) and is left out of each norm's statistics."""
        h = self.embed(units)
        if self.centroid_proj is not None:
            h = h + self.centroid_proj(self.get_buffer("centroids")[units])
        h = h.transpose(1, 2)
        real = None if lengths is None else _real_mask(lengths, h.shape[2])
        half = len(self.blocks) // 2
        for n, (block, norm) in enumerate(zip(self.blocks, self.norms, strict=True)):
            if n == half:
                h = h.repeat_interleave(self.upsample, dim=2)
                if lengths is not None:
                    real = _real_mask(lengths * self.upsample, h.shape[2])
            if real is None:
                h = h + self.drop(block(norm(h)))
            else:
                h = (h + self.drop(block(_masked_group_norm(norm, h, real) * real))) * real
        return self.out(h).transpose(1, 2)


def _real_mask(lengths: Tensor, width: int) -> Tensor:
    """(B,) lengths -> (B, 1, width) float mask of the real positions."""
    return (torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]).float()[:, None]


def _masked_group_norm(norm: nn.Module, h: Tensor, real: Tensor) -> Tensor:
    """`norm` (one group) over each row's real positions only: a batch's padding must not
    move a clip's statistics, which decoding the clip alone never sees."""
    count = real.sum(dim=(1, 2), keepdim=True) * h.shape[1]
    mean = (h * real).sum(dim=(1, 2), keepdim=True) / count
    var = (((h - mean) * real) ** 2).sum(dim=(1, 2), keepdim=True) / count
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 1
    normed = (h - mean) / torch.sqrt(var + norm.eps)
    return normed * norm.weight[None, :, None] + norm.bias[None, :, None]


class UnitToSpeech:
    """Encode with the unit tokenizer, decode with the trained network and Griffin-Lim."""

    def __init__(self, config: U2SConfig, units: KMeansUnits, net: UnitToMel,
                 vocoder: Any = None) -> None:
        if units.config.k != config.k:
            raise ModelError(f"unit tokenizer has k={units.config.k}, the decoder k={config.k}")
        self.config, self.units, self.net = config, units, net.eval()
        self.vocoder = vocoder  # a MelVocoder on MEL frames, or None for Griffin-Lim
        self.info = units.info

    def encode(self, audio: Audio) -> Codes:
        return self.units.encode(audio)

    def mel(self, codes: Codes) -> np.ndarray:
        units = torch.as_tensor(np.asarray(codes[0], np.int64))[None]
        if units.numel() and (int(units.min()) < 0 or int(units.max()) >= self.config.k):
            raise ValueError(f"units must be in [0, {self.config.k})")
        with torch.inference_mode():
            return np.asarray(self.net(units)[0].numpy(), np.float32)

    def decode(self, codes: Codes) -> Audio:
        if self.vocoder is not None:
            return self.vocoder(self.mel(codes))
        return griffin_lim(self.mel(codes), MEL, self.config.griffin_lim_iters,
                           self.config.griffin_lim_seed)

    @classmethod
    def train(cls, audios: Sequence[Audio], units: KMeansUnits, config: U2SConfig | None = None,
              seed: int = 0, progress: Callable[[int, int, float], None] | None = None,
              alternates: Callable[[int, np.ndarray], Sequence[int]] | None = None,
              codes: Sequence[np.ndarray] | None = None) -> UnitToSpeech:
        """Fit the network on (units, log-mel) pairs of `audios` (one voice).

        `alternates(n, units)`: another unit sequence of the same length that should sound
        like audio n (a token LM's teacher-forced predictions,
        `TokenSpeechLM.teacher_forced_units`); half the examples then read those instead of
        the clip's own units, so the decoder learns to render the LM's near misses.
        `codes`: the units of `audios` when already known (`unit_cache.encode_files`)."""
        c = config or U2SConfig.for_units(units)
        if c.batching not in ("clips", "padded"):
            raise ValueError(f"batching must be 'clips' or 'padded', not {c.batching!r}")
        if c.upsample != 2 * units.config.stride:
            raise ValueError(f"upsample {c.upsample} does not turn {units.info.rates[0]:g} "
                             f"units/s into {MEL.sample_rate // MEL.hop} mel frames/s; use "
                             f"{2 * units.config.stride}")
        mixed = precision.resolve(c.autocast, "cpu")  # ValueError names the choices
        torch.manual_seed(seed)
        rng = random.Random(seed)
        pairs: list[tuple[Tensor, Tensor]] = []
        others: list[Tensor] = []
        if codes is not None and len(codes) != len(audios):
            raise ValueError(f"{len(codes)} unit sequences for {len(audios)} audios")
        known = units.encode_many(audios) if codes is None else codes
        for n, (a, u) in enumerate(zip(audios, known, strict=True)):
            mel = log_mel(a, MEL)
            frames = len(u) * c.upsample
            if len(mel) < frames:  # the last unit may cover a partial frame
                mel = np.concatenate([mel, np.repeat(mel[-1:], frames - len(mel), axis=0)])
            pairs.append((torch.as_tensor(u), torch.as_tensor(mel[:frames])))
            if alternates is not None:
                other = np.asarray(alternates(n, u), np.int64)
                if len(other) != len(u):
                    raise ValueError(f"audio {n}: {len(other)} alternate units for {len(u)}")
                others.append(torch.as_tensor(other))
        net = UnitToMel(c, units.centroids)

        def batch_loss() -> Tensor:
            batch_u, batch_m, real = [], [], []
            for _ in range(c.batch_size):
                pick = rng.randrange(len(pairs))
                all_u, all_m = pairs[pick]
                if others and rng.random() < 0.5:
                    all_u = others[pick]
                start = rng.randrange(max(1, len(all_u) - c.crop_units + 1))
                cu = all_u[start:start + c.crop_units]
                batch_u.append(cu)
                batch_m.append(all_m[start * c.upsample:(start + len(cu)) * c.upsample])
                real.append(len(cu))
            width = c.crop_units if c.batching == "padded" else max(real)
            for n, (cu, cm) in enumerate(zip(batch_u, batch_m, strict=True)):
                pad = width - len(cu)  # short clips: pad with their last unit/frame
                batch_u[n] = torch.cat([cu, cu[-1:].repeat(pad)])
                batch_m[n] = torch.cat([cm, cm[-1:].repeat(pad * c.upsample, 1)])
            with precision.autocast(mixed, "cpu"):
                if c.batching == "padded":
                    mel = net(torch.stack(batch_u))
                else:
                    mel = net(torch.stack(batch_u), torch.tensor(real))
            err = (mel.float() - torch.stack(batch_m)).abs()
            if c.batching == "padded":
                return err.mean()
            frames = torch.tensor(real)[:, None] * c.upsample
            scored = (torch.arange(width * c.upsample)[None, :] < frames).to(err.dtype)
            return (err.mean(-1) * scored).sum() / scored.sum()

        fit(net, c.steps, c.lr, batch_loss, progress)
        return cls(c, units, net)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        st = require("safetensors.torch", "latent")
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({"kind": "unit2speech",
                                                     **asdict(self.config)}, indent=2) + "\n")
        st.save_file({k: v.contiguous() for k, v in self.net.state_dict().items()},
                     str(out / "unit2speech.safetensors"))
        self.units.save(out / "units")
        if self.vocoder is not None:
            self.vocoder.save(out / "vocoder")
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> UnitToSpeech:
        st = require("safetensors.torch", "latent")
        with opening(folder, "unit-to-speech model") as path:
            config = U2SConfig(**read_config(path, "unit2speech"))
            units = KMeansUnits.load(path / "units")
            net = UnitToMel(config, units.centroids)
            net.load_state_dict(st.load_file(str(path / "unit2speech.safetensors")))
        vocoder = None
        if (path / "vocoder").is_dir():
            from speechllm.tokens.vocoder import attached
            vocoder = attached(path, MEL)
        return cls(config, units, net, vocoder)

