"""A training step with bfloat16 matrix products (`train.autocast`) against float32, on a
recipe's real batches, timed in the same run.

Each batch is drawn as the trainer draws it (bench/packed_batches.py's `draw_batches`) and
trained one step each way, alternating which goes first, with LoRA and AdamW as the trainer
sets them up (learning rate 0, so every step sees the same weights). It prints each step's
time as a ratio of float32's and how far the bfloat16 loss is from the float32 one. What it
costs in quality is measured by training with it (docs/token_digits/recipe_speed.md).

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
                    help="alternate the two ways batch by batch, or time every float32 step "
                         "first and then every bfloat16 one (as a training run sees them)")
    args = ap.parse_args()

    import torch
    from packed_batches import draw_batches, timed_step

    from speechllm.latent import precision
    from speechllm.latent.train import add_lora, load_config
    from speechllm.tokens.model import TokenLMConfig, TokenSpeechLM

    cfg = load_config(args.config)
    if not isinstance(cfg.model, TokenLMConfig):
        raise SystemExit(f"{args.config}: not a token model config")
    model = TokenSpeechLM(cfg.model)
    add_lora(model, cfg.model)
    model.adapter.train()
    params = [*model.adapter.parameters(), *(p for p in model.lm.parameters() if p.requires_grad)]
    optim = torch.optim.AdamW(params, lr=0.0)
    batches = draw_batches(cfg, model, args.batches + 1, cfg.train.batch_size, args.seed)

    def step(mode: str, b: tuple) -> tuple[float, float]:
        return timed_step(model, optim, b, mode)

    modes = ("off", "bf16")
    for mode in modes:
        step(mode, batches[0])  # warm-up: first-call allocations, oneDNN kernels
    times: dict[str, list[float]] = {m: [] for m in modes}
    losses: dict[str, list[float]] = {m: [] for m in modes}
    if args.order == "alternate":
        plan = [(mode, b) for n, b in enumerate(batches[1:])
                for mode in (modes if n % 2 == 0 else modes[::-1])]
    else:
        plan = [(mode, b) for mode in modes for b in batches[1:]]
    for mode, b in plan:
        seconds, loss = step(mode, b)
        times[mode].append(seconds)
        losses[mode].append(loss)
    native = precision.native_bf16("cpu")
    print(f"{args.config}: {args.batches} batches of {cfg.train.batch_size}, CPU, torch "
          f"threads {torch.get_num_threads()}, bf16 in hardware: {'yes' if native else 'no'}")
    print("| products | step s (mean) | median | time vs float32 | loss vs float32 (mean, max) |")
    print("|---|---|---|---|---|")
    for mode in modes:
        gaps = [abs(a - b) / b for a, b in zip(losses[mode], losses["off"], strict=True)]
        print(f"| {'float32' if mode == 'off' else 'bfloat16'} | "
              f"{statistics.mean(times[mode]):.2f} | {statistics.median(times[mode]):.2f} | "
              f"{sum(times[mode]) / sum(times['off']):.2f} | "
              f"{100 * statistics.mean(gaps):.2f}%, {100 * max(gaps):.2f}% |")


if __name__ == "__main__":
    main()
