"""Mixed precision for training: bfloat16 matrix products where the hardware does them
natively, float32 everywhere else.

On a 2-core CPU with AVX-512 BF16 and AMX a token LM step took 0.67-0.71x the float32 one
(bench/autocast.py, docs/benchmarks.md). A CPU without them has no bfloat16 arithmetic, so
torch converts on the way (not measured here): "auto" leaves it off there.
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
