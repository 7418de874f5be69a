"""What a training step costs against how many tokens it holds, on a recipe's real batches.

Batches are drawn as the trainer draws them (bench/packed_batches.py's `draw_batches`) at the
largest size asked, and each smaller size trains on the first rows of the same batches, so
every size sees the same kind of examples. Each size takes one step per batch, the order of
the sizes alternating from batch to batch, with LoRA and AdamW as the trainer sets them up
(learning rate 0: every step sees the same weights) and the config's `autocast`. It prints
each size's median step time, its tokens, the time per token, and the step time as a ratio of
the first size's (same run). If the time per token stays flat across sizes, a step's cost is
its tokens and a bigger batch buys nothing per example; if it falls, a step has a fixed cost
that bigger batches spread.

    .venv/bin/python bench/step_tokens.py recipes/token_digits/config.json --sizes 4,8,16
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
    ap.add_argument("--sizes", default="4,8,16", help="batch sizes, comma-separated")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    import torch
    from packed_batches import draw_batches, timed_step, training_model

    from speechllm.lm import precision
    from speechllm.tokens.model import TokenSpeechLM

    cfg, model = training_model(args.config)
    params = [*model.adapter.parameters(), *(p for p in model.lm.parameters() if p.requires_grad)]
    optim = torch.optim.AdamW(params, lr=0.0)
    mode = precision.resolve(cfg.train.autocast, "cpu")
    batches = draw_batches(cfg, model, args.batches + 1, max(sizes), args.seed)

    def first(b: tuple, n: int) -> tuple:
        states, lengths, instructions, answers = b
        lengths = lengths[:n]
        return states[:n, : int(lengths.max())], lengths, instructions[:n], answers[:n]

    def tokens(b: tuple) -> int:
        if isinstance(model, TokenSpeechLM):
            return sum(len(row) for row in model.training_rows(*b)[0])
        states, lengths, instructions, answers = b
        ids = [model.answer_ids(a) for a in answers]
        return sum(len(labels) for labels in
                   model.embed_rows(states, lengths, instructions, ids)[1])

    def step(b: tuple) -> float:
        return timed_step(model, optim, b, mode)[0]

    for n in sizes:
        step(first(batches[0], n))  # warm-up: first-call allocations, oneDNN kernels
    times: dict[int, list[float]] = {n: [] for n in sizes}
    held: dict[int, list[int]] = {n: [] for n in sizes}
    for k, b in enumerate(batches[1:]):
        for n in (sizes if k % 2 == 0 else sizes[::-1]):
            cut = first(b, n)
            held[n].append(tokens(cut))
            times[n].append(step(cut))
    print(f"{args.config}: {args.batches} batches, CPU, torch threads {torch.get_num_threads()}, "
          f"autocast {mode}\n")
    print("| batch | tokens | s/step | ms/token | step time vs batch "
          f"{sizes[0]} |\n|---|---|---|---|---|")
    base = statistics.median(times[sizes[0]])
    for n in sizes:
        seconds, count = statistics.median(times[n]), statistics.mean(held[n])
        print(f"| {n} | {count:.0f} | {seconds:.3f} | {1000 * seconds / count:.2f} | "
              f"{seconds / base:.2f} |")


if __name__ == "__main__":
    main()
