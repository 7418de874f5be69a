"""Which of the LLM's layers get LoRA: the `model.lora_modules` setting shared by the latent and
token models (the trainer wraps those layers with peft; a saved model's `lora/` folder records
them, so loading needs nothing from here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from speechllm._optional import require

if TYPE_CHECKING:
    from torch import nn

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


class LoraSettings(Protocol):
    @property
    def lora_rank(self) -> int: ...

    @property
    def lora_modules(self) -> tuple[str, ...]: ...


class HasLM(Protocol):
    lm: nn.Module


def add_lora(model: HasLM, settings: LoraSettings) -> None:
    """Wrap `model.lm` in LoRA as `settings` (a model config with `lora_rank` and
    `lora_modules`) asks; nothing at rank 0. ValueError names layers the LLM lacks."""
    if not settings.lora_rank:
        return
    torch = require("torch", "latent")
    peft = require("peft", "latent")
    lora = peft.LoraConfig(r=settings.lora_rank, lora_alpha=2 * settings.lora_rank,
                           target_modules=list(settings.lora_modules), lora_dropout=0.0)
    # peft skips a named layer it cannot find as long as one other matches: check them all
    names = {n.rsplit(".", 1)[-1] for n, m in model.lm.named_modules()
             if isinstance(m, torch.nn.Linear)}
    missing = [m for m in settings.lora_modules if m not in names]
    if missing:
        raise ValueError(f"model.lora_modules: {', '.join(missing)} not in this LLM; its "
                         f"linear layers: {', '.join(sorted(names))}")
    model.lm = peft.get_peft_model(model.lm, lora)
