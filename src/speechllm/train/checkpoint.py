"""Training checkpoints (the trainable weights, optimiser, schedule and step; a rerun resumes
from the latest) and the loss curve."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechllm._optional import require
from speechllm.train.sharding import load_weights

if TYPE_CHECKING:
    from torch import Tensor, nn
    from torch.optim.lr_scheduler import LRScheduler

    from speechllm.train.base import Trainable


def latest(out: Path) -> Path | None:
    found = sorted((p for p in out.glob("checkpoint-*") if (p / "trainer_state.pt").is_file()),
                   key=lambda p: int(p.name.split("-")[1]))
    return found[-1] if found else None


def restore(folder: Path, model: Trainable, encoder: nn.Module | None,
            lora_params: Sequence[Tensor]) -> dict[str, Any]:
    """Load a checkpoint's weights into the (still unwrapped) model; returns the rest of its
    state (optimizer, schedule, step, losses). Read on the CPU first: a run on a GPU resumes on
    a CPU machine and back."""
    torch = require("torch", "latent")
    state: dict[str, Any] = torch.load(folder / "trainer_state.pt", weights_only=False,
                                       map_location="cpu")
    load_weights(state, model, encoder, lora_params)
    return state


def save(out: Path, step: int, weights: dict[str, Any], optimizer: dict[str, Any],
         schedule: LRScheduler, losses: list[float], config: dict[str, Any]) -> None:
    """`weights` as `sharding.trained_weights` gives them, `optimizer` as
    `sharding.optimizer_state` does."""
    torch = require("torch", "latent")
    folder = out / f"checkpoint-{step}"
    tmp = out / f".checkpoint-{step}.partial"
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save({"step": step, **weights, **optimizer, "schedule": schedule.state_dict(),
                "losses": losses, "config": config}, tmp / "trainer_state.pt")
    tmp.rename(folder)  # a checkpoint exists whole or not at all
    for old in out.glob("checkpoint-*"):
        if old != folder and (old / "trainer_state.pt").is_file():
            for f in old.iterdir():
                f.unlink()
            old.rmdir()


def plot(losses: list[float], path: Path) -> None:
    import numpy as np

    matplotlib = require("matplotlib", "eval")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, alpha=0.35, label="loss per step")
    if len(losses) >= 10:
        k = max(5, len(losses) // 30)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, label=f"mean of {k} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (answer tokens)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("training loss")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
