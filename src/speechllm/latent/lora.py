"""Which of the LLM's layers get LoRA: the `model.lora_modules` setting shared by the latent and
token models (the trainer wraps those layers with peft; a saved model's `lora/` folder records
them, so loading needs nothing from here)."""

from __future__ import annotations

from typing import Any

# LoRA's usual place (the LoRA paper's choice); a list such as all seven of a Llama-style
# block's projections gives the LLM more to learn with
LORA_MODULES = ("q_proj", "v_proj")


def lora_modules(value: Any, where: str = "model") -> tuple[str, ...]:
    """`model.lora_modules` from JSON: a non-empty list of module names, as a tuple."""
    if not (isinstance(value, list | tuple) and value
            and all(isinstance(v, str) and v for v in value)):
        raise ValueError(f"{where}.lora_modules: expected a non-empty list of module names "
                         f"such as {list(LORA_MODULES)}, got {value!r}")
    return tuple(value)
