"""What a token LM training step costs when the LLM's first layers get no gradient.

With the new token rows as inputs and the first N layers' LoRA frozen, nothing below layer N
needs a gradient, so the backward pass stops there (the rows still learn as the audio output
head). Each setting trains one step on the same batches of a recipe's config (drawn as the
trainer draws them), the order of the settings alternating from batch to batch, with LoRA and
AdamW as the trainer sets them up (learning rate 0: every step sees the same weights) and the
config's `autocast`. It prints each setting's median step time as a ratio of the unfrozen
step's (same run). The quality this costs is a recipe run's question
(docs/token_digits/results.md#recipe_speed, "Tried: the mixed phase with its first layers frozen").

    .venv/bin/python bench/frozen_layers.py recipes/token_digits/config.json --frozen 0,6,9
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--frozen", default="0,6,9", help="numbers of frozen first layers")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    settings = [int(n) for n in args.frozen.split(",")]

    import torch
    from packed_batches import draw_batches, timed_step, training_model

    from speechllm.lm import precision

    cfg, model = training_model(args.config, tokens_only=True)
    lora = [(n, p) for n, p in model.lm.named_parameters() if p.requires_grad]
    optim = torch.optim.AdamW([*model.adapter.parameters(), *(p for _, p in lora)], lr=0.0)
    mode = precision.resolve(cfg.train.autocast, "cpu")
    batches = draw_batches(cfg, model, args.batches + 1, cfg.train.batch_size, args.seed)
    embed = model.embed_ids

    def freeze(n: int) -> None:
        for name, param in lora:
            found = re.search(r"\.layers\.(\d+)\.", name)
            param.requires_grad_(not (found and int(found.group(1)) < n))
        # the rows as inputs without a gradient: nothing below layer n is kept for backward
        model.embed_ids = (lambda ids: embed(ids).detach()) if n else embed  # type: ignore[method-assign]

    for n in settings:  # warm-up: first-call allocations, oneDNN kernels
        freeze(n)
        timed_step(model, optim, batches[0], mode)
    times: dict[int, list[float]] = {n: [] for n in settings}
    for k, batch in enumerate(batches[1:]):
        for n in (settings if k % 2 == 0 else settings[::-1]):
            freeze(n)
            times[n].append(timed_step(model, optim, batch, mode)[0])
    print(f"{args.config}: {args.batches} batches of {cfg.train.batch_size}, CPU, torch threads "
          f"{torch.get_num_threads()}, autocast {mode}\n")
    print(f"| frozen first layers | s/step | time vs {settings[0]} frozen |\n|---|---|---|")
    base = statistics.median(times[settings[0]])
    for n in settings:
        seconds = statistics.median(times[n])
        print(f"| {n} | {seconds:.3f} | {seconds / base:.2f} |")


if __name__ == "__main__":
    main()
