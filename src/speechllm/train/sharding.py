"""The accelerator a training run uses, and the trainable weights gathered whole for saving.

FSDP on CPUs: accelerate 1.15 shards only on accelerators. Asked for FSDP (`accelerate
launch --use_fsdp`, or `ACCELERATE_USE_FSDP=true` under torchrun) on CPU processes it quietly
falls back to DDP, so a sharding config could not be rehearsed on a CPU machine before it
meets a GPU. torch's FSDP2 (`fully_shard`) shards over gloo as well, and accelerate's own
FSDP2 preparation works there once its state says FSDP: `accelerator()` makes that one
switch, so the same prepare, clipping and state-dict code runs on CPUs as on GPUs.

Under FSDP each process holds a shard of every weight, so what is saved (a checkpoint, the
final model) is gathered first, by every process together.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from speechllm._optional import require
from speechllm.train.base import ConfigError

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch import Tensor, nn
    from torch.optim import Optimizer

    from speechllm.train.base import Trainable


def fsdp_requested() -> bool:
    """Whether the launch asked for FSDP (what `accelerate launch` and its config set)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("true", "1", "yes")


def accelerator() -> Accelerator:
    torch = require("torch", "latent")
    accelerate = require("accelerate", "latent")
    from accelerate.state import PartialState
    from accelerate.utils import (
        DataLoaderConfiguration,
        DistributedType,
        FullyShardedDataParallelPlugin,
    )

    # each process draws the batch stream itself and keeps its share (a stream of Python
    # rows cannot be sent from one process to the others, as dispatching would)
    acc = accelerate.Accelerator(cpu=not torch.cuda.is_available(),
                                 dataloader_config=DataLoaderConfiguration(dispatch_batches=False))
    if not (fsdp_requested() and acc.distributed_type == DistributedType.MULTI_CPU):
        return acc
    if os.environ.get("FSDP_VERSION", "2") != "2":
        raise ConfigError("FSDP on CPU processes needs FSDP2 (`fsdp_version: 2` in accelerate's "
                          "config, or FSDP_VERSION=2): torch's FSDP1 shards only on accelerators")
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2)  # the rest from FSDP_* variables
    # accelerate keeps the type in two shared states; prepare() re-reads the partial one
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    acc.state.distributed_type = DistributedType.FSDP
    acc.state.fsdp_plugin = plugin
    return acc


def sharded(acc: Accelerator) -> bool:
    from accelerate.utils import DistributedType

    return bool(acc.distributed_type == DistributedType.FSDP)


def label(acc: Accelerator) -> str:
    """How several processes share the work, for the run's report ("" for one process)."""
    from accelerate.utils import DistributedType

    if acc.num_processes < 2:
        return ""
    return {DistributedType.FSDP: "FSDP", DistributedType.DEEPSPEED: "DeepSpeed"}.get(
        acc.distributed_type, "DDP")


def _whole(value: Tensor) -> Tensor:
    """A weight as one plain CPU tensor (a collective for a sharded one: every process calls)."""
    full = value.full_tensor() if hasattr(value, "full_tensor") else value
    return full.detach().to("cpu").clone()


def trained_weights(model: Trainable, encoder: nn.Module | None,
                    lora_params: Sequence[Tensor]) -> dict[str, Any]:
    """What training changes, whole: the adapter's and the tuned encoder's state dicts and the
    LoRA tensors in the optimiser's order. Every process must call it under FSDP."""
    weights: dict[str, Any] = {
        "adapter": {k: _whole(v) for k, v in model.adapter.state_dict().items()},
        "lora": [_whole(p) for p in lora_params]}
    if encoder is not None:
        weights["encoder"] = {k: _whole(v) for k, v in encoder.state_dict().items()}
    return weights


def load_weights(weights: dict[str, Any], model: Trainable, encoder: nn.Module | None,
                 lora_params: Sequence[Tensor]) -> None:
    """Put `trained_weights` (or a checkpoint's) into an unwrapped model."""
    model.adapter.load_state_dict(weights["adapter"])
    if encoder is not None and "encoder" in weights:
        encoder.load_state_dict(weights["encoder"])
    for p, saved in zip(lora_params, weights.get("lora", []), strict=False):
        p.data.copy_(saved)


# The optimiser's state is saved whole and keyed by parameter name (torch's distributed
# state-dict helpers), so a checkpoint resumes under any number of processes, sharded or not.
# Checkpoints written before keep `Optimizer.state_dict()`'s numbered form.
NAMED = "named"


def optimizer_state(acc: Accelerator, wrapped: nn.Module, optim: Optimizer) -> dict[str, Any]:
    """Every process must call it (a sharded state is gathered)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
    )

    whole = get_optimizer_state_dict(wrapped, optim, options=StateDictOptions(
        full_state_dict=sharded(acc), cpu_offload=True))
    return {"optimizer": whole, "optimizer_format": NAMED}


def load_optimizer_state(acc: Accelerator, wrapped: nn.Module, optim: Optimizer,
                         state: dict[str, Any]) -> None:
    if state.get("optimizer_format") == NAMED:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        # every process read the whole file; under FSDP each takes its own shard of it
        set_optimizer_state_dict(wrapped, optim, state["optimizer"],
                                 options=StateDictOptions(full_state_dict=sharded(acc)))
        return
    if sharded(acc):
        raise ConfigError("this checkpoint was written by speechllm before 2026-12-07, without "
                          "FSDP: resume it without FSDP (its optimiser state is numbered, not "
                          "named)")
    optim.load_state_dict(state["optimizer"])
