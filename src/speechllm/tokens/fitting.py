"""The small optimisation loop the decoders trained here share (unit-to-speech, vocoder)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def fit(net: nn.Module, steps: int, lr: float, batch_loss: Callable[[], Tensor],
        progress: Callable[[int, int, float], None] | None = None) -> None:
    """AdamW with a one-cycle schedule and clipped gradients; `batch_loss` draws a batch and
    returns its loss."""
    optim = torch.optim.AdamW(net.parameters(), lr=lr)
    # 5% warm-up, but at least 1.5 steps: OneCycleLR divides by zero when the warm-up is
    # exactly one step (20 steps at 5%)
    warmup = min(0.75, max(0.05, 1.5 / steps))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optim, lr, total_steps=steps,
                                                   pct_start=warmup)
    net.train()
    for step in range(1, steps + 1):
        loss = batch_loss()
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optim.step()
        schedule.step()
        if progress:
            progress(step, steps, float(loss.detach()))
    net.eval()
