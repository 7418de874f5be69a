"""Modality adapters: encoder states (B, T, D_enc) -> LLM input embeddings (B, T', D_llm).

Each adapter also maps the valid lengths, so padding never leaks into the prompt:
- `FrameStackProjector`: concatenate k consecutive frames, then a 2-layer MLP (SLAM-ASR and
  Ultravox style). T' = ceil(T / k).
- `ConvDownsampler`: two stride-2 1-D convolutions then a linear projection. T' = ceil(T / 4).
- `WindowQFormer`: a few learned queries cross-attend to each window of w frames (SALMONN's
  window-level Q-Former). T' = ceil(T / w) * queries.
- `UltravoxProjector`: Ultravox's own layout (stack k, RMSNorm, Linear, SwiGLU, RMSNorm,
  Linear), so released Ultravox projector weights load by name. T' = ceil(T / k). Kind
  "ultravox" puts the middle norm after the activation (Ultravox v0.5 and later);
  "ultravox-ln-post" puts it after the output (v0.4 and earlier).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from speechllm.errors import MissingDependency
from speechllm.registry import Registry

try:
    import torch
    from torch import Tensor, nn
except ImportError as exc:  # this module is PyTorch through and through
    raise MissingDependency(f"torch is not installed ({exc}); install it with: "
                            "pip install 'speechllm[latent]'") from exc


@dataclass(frozen=True)
class AdapterConfig:
    kind: str = "stack"  # "stack", "conv", "qformer", "ultravox" or "ultravox-ln-post"
    enc_dim: int = 512
    llm_dim: int = 896
    hidden: int = 1024
    stack: int = 4  # frames per output for "stack" (50 Hz states -> 12.5 Hz)
    window: int = 8  # frames per window for "qformer"
    queries: int = 2  # learned queries per window for "qformer"
    layers: int = 1  # transformer layers for "qformer"
    heads: int = 4

    def __post_init__(self) -> None:
        if self.kind not in ADAPTERS:
            raise ValueError(f"adapter.kind: unknown {self.kind!r}; choose one of: "
                             f"{', '.join(ADAPTERS)}")
        for name in ("enc_dim", "llm_dim", "hidden", "stack", "window", "queries", "layers",
                     "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"adapter.{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mask(lengths: Tensor, size: int) -> Tensor:
    """(B, size) True where a position is valid."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


class FrameStackProjector(nn.Module):
    def __init__(self, c: AdapterConfig) -> None:
        super().__init__()
        self.k = c.stack
        self.proj = nn.Sequential(nn.Linear(c.enc_dim * c.stack, c.hidden), nn.GELU(),
                                  nn.Linear(c.hidden, c.llm_dim))

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, D_enc), lengths (B,) -> (B, ceil(T/k), D_llm), ceil(lengths/k)."""
        b, t, d = x.shape
        x = x * _mask(lengths, t)[..., None]
        pad = (-t) % self.k
        if pad:
            x = nn.functional.pad(x, (0, 0, 0, pad))
        x = x.reshape(b, (t + pad) // self.k, d * self.k)
        return self.proj(x), torch.div(lengths + self.k - 1, self.k, rounding_mode="floor")


class ConvDownsampler(nn.Module):
    def __init__(self, c: AdapterConfig) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(c.enc_dim, c.hidden, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv1d(c.hidden, c.hidden, 3, stride=2, padding=1), nn.GELU())
        self.proj = nn.Linear(c.hidden, c.llm_dim)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, D_enc), lengths (B,) -> (B, ceil(T/4), D_llm), ceil(lengths/4)."""
        x = x * _mask(lengths, x.shape[1])[..., None]
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        out_len = lengths
        for _ in range(2):
            out_len = torch.div(out_len + 1, 2, rounding_mode="floor")
        return self.proj(y), out_len


class WindowQFormer(nn.Module):
    def __init__(self, c: AdapterConfig) -> None:
        super().__init__()
        self.window, self.n_queries = c.window, c.queries
        self.queries = nn.Parameter(torch.randn(c.queries, c.hidden) * 0.02)
        self.inp = nn.Linear(c.enc_dim, c.hidden)
        self.pos = nn.Parameter(torch.zeros(c.window, c.hidden))
        layer = nn.TransformerDecoderLayer(c.hidden, c.heads, 2 * c.hidden, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerDecoder(layer, c.layers)
        self.proj = nn.Linear(c.hidden, c.llm_dim)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, D_enc), lengths (B,) -> (B, ceil(T/w)*q, D_llm), ceil(lengths/w)*q."""
        b, t, _ = x.shape
        valid = _mask(lengths, t)
        pad = (-t) % self.window
        h = self.inp(x)
        if pad:
            h = nn.functional.pad(h, (0, 0, 0, pad))
            valid = nn.functional.pad(valid, (0, pad), value=False)
        n = (t + pad) // self.window
        h = h.reshape(b * n, self.window, -1) + self.pos
        memory_pad = ~valid.reshape(b * n, self.window)
        memory_pad[:, 0] = False  # an all-padding window would give NaNs; its output is unused
        q = self.queries.expand(b * n, -1, -1)
        out = self.blocks(q, h, memory_key_padding_mask=memory_pad)
        out = self.proj(out).reshape(b, n * self.n_queries, -1)
        windows = torch.div(lengths + self.window - 1, self.window, rounding_mode="floor")
        return out, windows * self.n_queries


class UltravoxProjector(nn.Module):
    def __init__(self, c: AdapterConfig) -> None:
        super().__init__()
        self.k = c.stack
        if c.hidden % 2:
            raise ValueError(f"adapter.hidden must be even for SwiGLU, got {c.hidden}")
        wide = c.enc_dim * c.stack
        self.ln_pre = nn.RMSNorm(wide, eps=1e-6)
        self.linear_1 = nn.Linear(wide, c.hidden, bias=False)
        self.linear_2 = nn.Linear(c.hidden // 2, c.llm_dim, bias=False)
        self.post = c.kind == "ultravox-ln-post"
        self.ln_mid = nn.Identity() if self.post else nn.RMSNorm(c.hidden // 2, eps=1e-6)
        self.ln_post = nn.RMSNorm(c.llm_dim, eps=1e-6) if self.post else nn.Identity()

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, D_enc), lengths (B,) -> (B, ceil(T/k), D_llm), ceil(lengths/k)."""
        b, t, d = x.shape
        pad = (-t) % self.k
        if pad:
            x = nn.functional.pad(x, (0, 0, 0, pad))
        h = self.linear_1(self.ln_pre(x.reshape(b, (t + pad) // self.k, d * self.k)))
        value, gate = h.chunk(2, dim=-1)  # SwiGLU: the second half gates the first
        h = self.ln_mid(nn.functional.silu(gate) * value)
        out = self.ln_post(self.linear_2(h))
        return out, torch.div(lengths + self.k - 1, self.k, rounding_mode="floor")


ADAPTERS: Registry[Callable[[AdapterConfig], nn.Module]] = Registry("adapter kind")
for _kind, _adapter in (("stack", FrameStackProjector), ("conv", ConvDownsampler),
                        ("qformer", WindowQFormer), ("ultravox", UltravoxProjector),
                        ("ultravox-ln-post", UltravoxProjector)):
    ADAPTERS.register(_kind, _adapter)


def make_adapter(config: AdapterConfig) -> nn.Module:
    module: nn.Module = ADAPTERS.get(config.kind)(config)
    return module


def output_length(config: AdapterConfig, states: int) -> int:
    """T' for T encoder states (without running the adapter)."""
    if config.kind in ("stack", "ultravox", "ultravox-ln-post"):
        return math.ceil(states / config.stack)
    if config.kind == "conv":
        return math.ceil(math.ceil(states / 2) / 2)
    return math.ceil(states / config.window) * config.queries
