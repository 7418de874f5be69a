"""`speechllm train CONFIG`: train a speech LLM (latent adapter or token LM) from a config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from speechllm.cli.common import (
    embedded,
    ensure_models,
    err,
    exits_on_error,
    out,
    progress,
    step_report,
)


def train(
    config: Annotated[Path, typer.Argument(help="JSON training config (model, data, train).")],
    legacy: Annotated[Path | None, typer.Argument(hidden=True)] = None,
) -> None:
    """Train a latent or token speech LLM from a JSON config.

    The config's model.approach picks the model: latent (the default) or tokens. Resumes from the output folder's latest checkpoint. Several processes: torchrun --nproc_per_node N -m speechllm.cli train CONFIG, or accelerate launch -m speechllm.cli train CONFIG; the model and optimiser go through accelerate's prepare, so an accelerate config applies."""  # noqa: E501  (one paragraph: typer rewraps it)
    from speechllm.train import load_config
    from speechllm.train import train as run

    main_process = os.environ.get("RANK", "0") == "0"  # torchrun / accelerate launch
    if legacy is not None and config.name == "latent":
        # `train latent CONFIG` was the command before `train CONFIG`; kept for one release
        config = legacy
        if main_process:
            err.print("note: `speechllm train latent CONFIG` is now `speechllm train CONFIG`; "
                      "the old form goes in the next release", highlight=False)
    elif legacy is not None:
        raise typer.BadParameter(f"one config file, got {config} and {legacy}")
    with exits_on_error():
        settings = load_config(config)  # every field checked before any model loads
        ensure_models(embedded(getattr(settings.model, "encoder", ""), settings.model.llm))
        with progress("training", count=False, loss=True, disable=not main_process,
                      extra=()) as bar:
            job = bar.add_task("train", total=settings.train.steps, loss="loss -")
            result = run(settings, step_report(bar, job, settings.train.log_every,
                                               main_process))
    if not main_process:
        return
    how = f" ({result.sharding})" if result.sharding else ""
    out.print(f"saved {result.output} after {result.steps} steps on {result.processes} "
              f"process(es){how} (final loss "
              f"{result.final_loss:.4f}; {result.seconds_per_step:.2f} s/step"
              f"{'; bf16 products' if result.precision == 'bf16' else ''}; peak RSS "
              f"{result.peak_rss_mb:.0f} MB); loss curve {result.loss_curve}", highlight=False,
              soft_wrap=True)  # one line: scripts read it
