"""A training step with bfloat16 matrix products (`train.autocast`) against float32, on a
recipe's real batches, timed in the same run.

Three ways: float32; bfloat16 products with the LLM's weights float32 (autocast rounds each
frozen weight to bfloat16 at every product, as the trainer did until 2026-12-05); and
bfloat16 products with the frozen weights stored in bfloat16 once
(`precision.store_frozen_bf16`, as the trainer does now), on a second copy of the model.
Each batch is drawn as the trainer draws it (bench/packed_batches.py's `draw_batches`) and
trained one step each way, rotating which goes first, with LoRA and AdamW as the trainer
sets them up (learning rate 0, so every step sees the same weights). It prints each step's
time as a ratio of float32's and how far the bfloat16 losses are from the float32 one (the
two bfloat16 ways should give the same loss). What it
costs in quality is measured by training with it (docs/token_digits/results.md#recipe_speed).

    .venv/bin/python bench/autocast.py recipes/token_digits/config.json --batches 8

On a CPU without AVX-512 BF16 or AMX the bench says so and runs anyway: its ratio is the
figure for such a CPU (`"autocast": "auto"` leaves bfloat16 off there; not measured yet).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--order", choices=("alternate", "blocks"), default="alternate",
                    help="rotate the three ways batch by batch, or time every step of one "
                         "way before the next (as a training run sees them)")
    args = ap.parse_args()

    import copy

    import torch
    from packed_batches import draw_batches, timed_step, training_model

    from speechllm.lm import precision
    from speechllm.tokens.model import TokenSpeechLM

    cfg, model = training_model(args.config, tokens_only=True)
    stored = copy.copy(model)  # shares the units and tokenizer; its own LLM and new rows
    stored.lm, stored.adapter = copy.deepcopy(model.lm), copy.deepcopy(model.adapter)
    precision.store_frozen_bf16(stored.lm)

    def optimiser(m: TokenSpeechLM) -> torch.optim.Optimizer:
        trained = [*m.adapter.parameters(), *(p for p in m.lm.parameters() if p.requires_grad)]
        return torch.optim.AdamW(trained, lr=0.0)

    # (name, model, its optimiser, autocast)
    ways = (("float32", model, optimiser(model), "off"),
            ("bfloat16 products", model, optimiser(model), "bf16"),
            ("bfloat16, frozen weights stored so", stored, optimiser(stored), "bf16"))
    batches = draw_batches(cfg, model, args.batches + 1, cfg.train.batch_size, args.seed)

    for _, m, optim, mode in ways:  # warm-up: first-call allocations, oneDNN kernels
        timed_step(m, optim, batches[0], mode)
    times: dict[str, list[float]] = {w[0]: [] for w in ways}
    losses: dict[str, list[float]] = {w[0]: [] for w in ways}
    if args.order == "alternate":
        plan = [(ways[(n + i) % len(ways)], b) for n, b in enumerate(batches[1:])
                for i in range(len(ways))]
    else:
        plan = [(w, b) for w in ways for b in batches[1:]]
    for (name, m, optim, mode), b in plan:
        seconds, loss = timed_step(m, optim, b, mode)
        times[name].append(seconds)
        losses[name].append(loss)
    native = precision.native_bf16("cpu")
    print(f"{args.config}: {args.batches} batches of {cfg.train.batch_size}, CPU, torch "
          f"threads {torch.get_num_threads()}, bf16 in hardware: {'yes' if native else 'no'}")
    print("| products | step s (mean) | median | time vs float32 | loss vs float32 (mean, max) |")
    print("|---|---|---|---|---|")
    base = "float32"
    for name in times:
        gaps = [abs(a - b) / b for a, b in zip(losses[name], losses[base], strict=True)]
        print(f"| {name} | {statistics.mean(times[name]):.2f} | "
              f"{statistics.median(times[name]):.2f} | "
              f"{sum(times[name]) / sum(times[base]):.2f} | "
              f"{100 * statistics.mean(gaps):.2f}%, {100 * max(gaps):.2f}% |")
    a, b = (losses[w[0]] for w in ways[1:])
    print(f"\nthe two bfloat16 ways' losses {'agree' if a == b else 'differ'} on every batch "
          f"(largest gap {max(abs(x - y) for x, y in zip(a, b, strict=True)):.2e})")


if __name__ == "__main__":
    main()
