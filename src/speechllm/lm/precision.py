"""Mixed precision for training: bfloat16 matrix products where the hardware does them
natively, float32 everywhere else.

On a 2-core CPU with AVX-512 BF16 and AMX a token LM step took 0.67-0.71x the float32 one
(bench/autocast.py, docs/benchmarks.md). A CPU without them has no bfloat16 arithmetic, so
torch converts on the way (not measured here): "auto" leaves it off there.
The trained weights (LoRA, new rows, adapter) stay float32 either way: only the products
inside the step are rounded, as in the bfloat16 training Gemma and Qwen had.

Under autocast a frozen weight is rounded to bfloat16 again at every product (torch caches
the rounding only for weights that train), so `store_frozen_bf16` rounds the LLM's frozen
linear layers once: the same products, without the copies.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

CHOICES = ("auto", "bf16", "off")


def native_bf16(device_type: str) -> bool:
    """Whether `device_type` ("cpu", "cuda") multiplies bfloat16 matrices in hardware."""
    import torch

    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device_type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def resolve(setting: str, device_type: str) -> str:
    """"auto" -> "bf16" or "off" for this device; "bf16" and "off" as they are."""
    if setting not in CHOICES:
        raise ValueError(f"autocast must be one of {', '.join(CHOICES)}, not {setting!r}")
    if setting == "auto":
        return "bf16" if native_bf16(device_type) else "off"
    return setting


def autocast(precision: str, device_type: str) -> AbstractContextManager[Any]:
    """The context a training step's forward pass runs in (backward follows its dtypes)."""
    import torch

    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return nullcontext()


def store_frozen_bf16(module: nn.Module) -> int:
    """Keep `module`'s frozen linear weights in bfloat16; returns how many values were
    converted. Under bfloat16 autocast the step's products are then the very same (autocast
    rounds those weights to bfloat16 anyway) without rounding a copy of each at every
    product. Weights that train (LoRA), and weights an embedding table shares (a tied output
    head, which reads only the few answer positions), stay as they are. Only for a module
    that runs under autocast from then on: a float32 product would meet a bfloat16 weight."""
    import torch

    shared = {id(p) for m in module.modules() if isinstance(m, torch.nn.Embedding)
              for p in m.parameters()}
    output = getattr(module, "get_output_embeddings", lambda: None)()
    if output is not None:
        shared |= {id(p) for p in output.parameters()}
    converted = 0
    for m in module.modules():
        if not isinstance(m, torch.nn.Linear):
            continue
        params = list(m.parameters(recurse=False))
        if any(p.requires_grad or id(p) in shared or p.dtype != torch.float32
               for p in params):
            continue
        m.to(torch.bfloat16)
        converted += sum(p.numel() for p in params)
    return converted
