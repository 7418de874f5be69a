"""Mixed precision for training: bfloat16 matrix products where the hardware does them
natively, float32 everywhere else.

On a CPU with AVX-512 BF16 or AMX, torch's bfloat16 matrix products run about twice as fast
as float32 ones, and an LM step is mostly matrix products (docs/token_digits/recipe_speed.md);
on a CPU without them bfloat16 is emulated and slower than float32, so "auto" leaves it off.
The trained weights (LoRA, new rows, adapter) stay float32 either way: only the products
inside the step are rounded, as in the bfloat16 training Gemma and Qwen had.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

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


def autocast(precision: str, device_type: str) -> Any:
    """The context a training step's forward pass runs in (backward follows its dtypes)."""
    import torch

    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return nullcontext()
