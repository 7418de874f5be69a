"""A small neural vocoder trained here: log-mel frames -> waveform, the quality option beside
Griffin-Lim.

No vocoder weights install offline, so speechllm trains its own on speech it synthesises (the
Piper voice). The design follows Vocos: a stack of ConvNeXt blocks runs at the frame rate and
predicts each frame's STFT (log-magnitude and phase), and an inverse STFT makes the waveform,
so there is no slow upsampling network and it trains on a CPU in minutes. Loss: multi-
resolution STFT (spectral convergence + log-magnitude L1) plus L1 between the input log-mel
and the log-mel of the output. No adversarial loss (it would need far longer training than a
CPU allows), so do not expect studio quality; bench/audio_tokens.py --vocoder-steps measures it
against Griffin-Lim.

Saved as a folder: `config.json` + `vocoder.safetensors`. A tokenizer folder holding one in
`vocoder/` (mel RVQ, unit-to-speech) decodes with it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from speechllm._optional import require
from speechllm.audio import Audio
from speechllm.errors import MissingDependency, ModelError
from speechllm.folders import opening, read_config, write_config
from speechllm.tokens.fitting import fit
from speechllm.tokens.mel import MelConfig, log_mel

try:
    import torch
    from torch import Tensor, nn
except ImportError as exc:
    raise MissingDependency(f"torch is not installed ({exc}); install it with: "
                            "pip install 'speechllm[latent]'") from exc

RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft, hop) of the STFT loss


@dataclass(frozen=True)
class VocoderConfig:
    mel: MelConfig = field(default_factory=MelConfig)
    channels: int = 128
    layers: int = 6
    steps: int = 3000
    batch_size: int = 16
    segment_frames: int = 64  # frames per training crop
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.channels < 8 or self.layers < 1 or self.steps < 1 or self.segment_frames < 8:
            raise ValueError("vocoder channels >= 8, layers >= 1, steps >= 1, "
                             "segment_frames >= 8")


class ConvNeXtBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(channels, channels, 7, padding=3, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.up = nn.Linear(channels, 3 * channels)
        self.down = nn.Linear(3 * channels, channels)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T)
        h = self.norm(self.depthwise(x).transpose(1, 2))
        return x + self.down(nn.functional.gelu(self.up(h))).transpose(1, 2)


class MelToWave(nn.Module):
    def __init__(self, c: VocoderConfig) -> None:
        super().__init__()
        self.mel = c.mel
        bins = c.mel.n_fft // 2 + 1
        self.inp = nn.Conv1d(c.mel.n_mels, c.channels, 7, padding=3)
        self.blocks = nn.Sequential(*(ConvNeXtBlock(c.channels) for _ in range(c.layers)))
        self.norm = nn.LayerNorm(c.channels)
        self.out = nn.Linear(c.channels, 2 * bins)
        self.window: Tensor
        self.register_buffer("window", torch.hann_window(c.mel.n_fft), persistent=False)

    def forward(self, mel: Tensor) -> Tensor:
        """(B, T, n_mels) log-mel -> (B, T * hop) waveform."""
        h = self.blocks(self.inp(mel.transpose(1, 2)))
        log_mag, phase = self.out(self.norm(h.transpose(1, 2))).transpose(1, 2).chunk(2, dim=1)
        mag = torch.exp(log_mag.clamp(max=6.0))  # bounded: an early step cannot blow up
        spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
        return torch.istft(spec, self.mel.n_fft, self.mel.hop, window=self.window,
                           center=True, length=mel.shape[1] * self.mel.hop)


def _stft_mag(y: Tensor, n_fft: int, hop: int) -> Tensor:
    window = torch.hann_window(n_fft, device=y.device)
    return torch.stft(y, n_fft, hop, window=window, return_complex=True).abs().clamp(min=1e-5)


class _Loss:
    def __init__(self, mel: MelConfig) -> None:
        librosa = require("librosa", "tokens")
        self.mel = mel
        self.bank = torch.as_tensor(librosa.filters.mel(sr=mel.sample_rate, n_fft=mel.n_fft,
                                                        n_mels=mel.n_mels), dtype=torch.float32)

    def __call__(self, fake: Tensor, real: Tensor, target_mel: Tensor) -> Tensor:
        total = fake.new_zeros(())
        for n_fft, hop in RESOLUTIONS:
            f, r = _stft_mag(fake, n_fft, hop), _stft_mag(real, n_fft, hop)
            total = total + torch.linalg.norm(r - f) / torch.linalg.norm(r)
            total = total + (f.log() - r.log()).abs().mean()
        power = _stft_mag(fake, self.mel.n_fft, self.mel.hop) ** 2
        mel = torch.log((self.bank @ power).clamp(min=self.mel.floor)).transpose(1, 2)
        frames = min(mel.shape[1], target_mel.shape[1])
        return total + (mel[:, :frames] - target_mel[:, :frames]).abs().mean()


class MelVocoder:
    """(T, n_mels) log-mel frames (as `log_mel` makes them) -> waveform."""

    def __init__(self, config: VocoderConfig, net: MelToWave) -> None:
        self.config, self.net = config, net.eval()

    def __call__(self, frames: np.ndarray) -> Audio:
        mel = torch.as_tensor(np.asarray(frames, np.float32))[None]
        if mel.ndim != 3 or mel.shape[2] != self.config.mel.n_mels:
            raise ValueError(f"expected (frames, {self.config.mel.n_mels}) log-mel, got "
                             f"{tuple(np.shape(frames))}")
        with torch.inference_mode():
            y = self.net(mel)[0].numpy() if mel.shape[1] else np.zeros(0, np.float32)
        peak = float(np.abs(y).max()) if y.size else 0.0
        if peak > 0.99:
            y = y * (0.99 / peak)
        return Audio(y.astype(np.float32), self.config.mel.sample_rate)

    @classmethod
    def train(cls, audios: Sequence[Audio], config: VocoderConfig | None = None, seed: int = 0,
              progress: Callable[[int, int, float], None] | None = None) -> MelVocoder:
        c = config or VocoderConfig()
        torch.manual_seed(seed)
        rng = random.Random(seed)
        hop, n = c.mel.hop, c.segment_frames
        clips: list[tuple[Tensor, Tensor]] = []
        for a in audios:
            frames = log_mel(a, c.mel)
            if len(frames) > n:
                clips.append((torch.as_tensor(a.resample(c.mel.sample_rate).samples,
                                              dtype=torch.float32), torch.as_tensor(frames)))
        if not clips:
            raise ValueError(f"no clip is longer than {n} frames "
                             f"({n * hop / c.mel.sample_rate:.2f} s) to train on")
        net = MelToWave(c)
        loss_fn = _Loss(c.mel)

        def batch_loss() -> Tensor:
            mels, waves = [], []
            for _ in range(c.batch_size):
                wave, mel = rng.choice(clips)
                start = rng.randrange(len(mel) - n)
                mels.append(mel[start:start + n])
                piece = wave[start * hop:(start + n) * hop]
                waves.append(nn.functional.pad(piece, (0, n * hop - len(piece))))
            target_mel = torch.stack(mels)
            return loss_fn(net(target_mel), torch.stack(waves), target_mel)

        fit(net, c.steps, c.lr, batch_loss, progress)
        return cls(c, net)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        st = require("safetensors.torch", "latent")
        out = write_config(folder, asdict(self.config), "mel-vocoder")
        st.save_file({k: v.contiguous() for k, v in self.net.state_dict().items()},
                     str(out / "vocoder.safetensors"))
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> MelVocoder:
        st = require("safetensors.torch", "latent")
        with opening(folder, "vocoder") as path:
            raw = read_config(path, "mel-vocoder")
            config = VocoderConfig(**{**raw, "mel": MelConfig(**raw["mel"])})
            net = MelToWave(config)
            net.load_state_dict(st.load_file(str(path / "vocoder.safetensors")))
        return cls(config, net)


def attached(folder: Path, mel: MelConfig) -> MelVocoder | None:
    """The vocoder saved in a tokenizer folder's `vocoder/`, if any; it must use the
    tokenizer's mel settings."""
    if not (folder / "vocoder").is_dir():
        return None
    vocoder = MelVocoder.load(folder / "vocoder")
    if vocoder.config.mel != mel:
        raise ModelError(f"{folder}/vocoder: trained on mel settings {vocoder.config.mel}, the "
                         f"tokenizer uses {mel}")
    return vocoder
