"""Packed against padded training batches, on a recipe's real batches (token or latent model).

Each batch is drawn as the trainer draws it (the config's manifests and weights, its batch
size), then trained one step packed (`model.packed_batches`, the default) and one step
padded, alternating which goes first, with LoRA and AdamW as the trainer sets them up. The
loss of the two must agree (the same sequences, each attending to itself alone); the
figure is the packed step's time as a ratio of the padded one measured in the same run.

    .venv/bin/python bench/packed_batches.py recipes/token_digits/config.json --batches 12
    .venv/bin/python bench/packed_batches.py recipes/latent_digits/config.json --batches 12

`--device cuda` times a GPU (bench/train_gpu.py's work folder holds configs and cached
units for one: `bench/packed_batches.py /tmp/train_gpu/run-cuda-2.json --device cuda`).

A token config needs its units encoded once (a trainer run on it, or `speechllm tokens fit`
on the same clips): the clips come from the shared units cache. A latent config's clips are
encoded here, only those the batches draw.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def training_model(path: Path, tokens_only: bool = False) -> tuple[Any, Any]:
    """(config, model) as the trainer sets them up from `path`: the config's token or latent
    model with its LoRA, the new rows or adapter in training mode. `tokens_only` refuses a
    latent config."""
    from speechllm.lm.lora import add_lora
    from speechllm.train import load_config

    cfg = load_config(path)
    if tokens_only and cfg.approach != "tokens":
        raise SystemExit(f"{path}: not a token model config")
    model: Any = cfg.build()
    add_lora(model, cfg.model)
    model.adapter.train()
    return cfg, model


def draw_batches(cfg: Any, model: Any, count: int, size: int, seed: int) -> list[tuple]:
    """`count` batches drawn as the trainer draws them (the config's manifests and weights),
    each (states, lengths, instructions, answers) ready for `model.loss`."""
    import torch

    from speechllm.data import read_manifest
    from speechllm.train import examples
    from speechllm.train.loop import _encode_all

    items: list[Any] = []
    groups: list[list[Any]] = []
    for path in cfg.manifests:
        part = read_manifest(path)
        groups.append([(n + len(items), q, a)
                       for n, q, a in examples(part, cfg.approach, cfg.model)])
        items += part
    weights = list(cfg.weights) or [len(g) for g in groups]
    rng = random.Random(seed)
    drawn = [[rng.choice(rng.choices(groups, weights)[0]) for _ in range(size)]
             for _ in range(count)]
    needed = sorted({i for mine in drawn for i, _, _ in mine})
    encoded = dict(zip(needed, _encode_all(model, [items[i] for i in needed],
                                           Path(cfg.train.output)), strict=True))
    out = []
    for mine in drawn:
        states = torch.nn.utils.rnn.pad_sequence([encoded[i] for i, _, _ in mine],
                                                 batch_first=True)
        lengths = torch.tensor([encoded[i].shape[0] for i, _, _ in mine])
        out.append((states, lengths, [q for _, q, _ in mine], [a for _, _, a in mine]))
    return out


def timed_step(model: Any, optim: Any, batch: tuple, autocast: str = "off") -> tuple[float, float]:
    """One training step on `batch` as the trainer takes it: (seconds, loss)."""
    from speechllm.lm import precision

    began = time.perf_counter()
    with precision.autocast(autocast, "cpu"):
        loss = model.loss(*batch)
    optim.zero_grad()
    loss.backward()
    optim.step()
    return time.perf_counter() - began, float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, help="instead of the config's")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda to time a GPU")
    args = ap.parse_args()

    import torch

    from speechllm.lm.lora import add_lora
    from speechllm.lm.packing import PACK_TOKENS
    from speechllm.train import load_config

    cfg = load_config(args.config)
    latent = cfg.approach == "latent"
    model: Any = cfg.build()
    add_lora(model, cfg.model)
    size = args.batch_size or cfg.train.batch_size
    batches = draw_batches(cfg, model, args.batches + 1, size, args.seed)  # first: a warm-up
    model.lm.to(args.device)
    model.adapter.to(args.device)
    params = [*model.adapter.parameters(), *(p for p in model.lm.parameters() if p.requires_grad)]
    optim = torch.optim.AdamW(params, lr=0.0)  # lr 0: every step sees the same weights

    def step(b: tuple, packed: bool) -> tuple[float, float]:
        model.config = dataclasses.replace(model.config, packed_batches=packed)
        seconds, loss = timed_step(model, optim, b)
        return loss, seconds

    def real_share(b: tuple) -> float:
        """Real tokens over the padded batch's positions (rows as the loss builds them)."""
        with torch.no_grad():
            if latent:
                answers = [model.answer_ids(a) for a in b[3]]
                sizes = [len(lab) for lab in model.embed_rows(*b[:3], answers)[1]]
            else:
                sizes = [len(r) for r in model.training_rows(*b)[0]]
        return sum(sizes) / (len(sizes) * max(sizes))

    step(batches[0], True)  # warm-up: first-call allocations
    times: dict[bool, list[float]] = {True: [], False: []}
    shares = []
    for n in range(args.batches):
        b = batches[n + 1]
        shares.append(real_share(b))
        losses = {}
        for packed in ((True, False) if n % 2 == 0 else (False, True)):
            losses[packed], seconds = step(b, packed)
            times[packed].append(seconds)
        if abs(losses[True] - losses[False]) > 1e-3 * abs(losses[False]):
            raise SystemExit(f"batch {n}: packed loss {losses[True]:.5f} != padded "
                             f"{losses[False]:.5f}")
    packed_s, padded_s = sum(times[True]), sum(times[False])
    where = torch.cuda.get_device_name() if args.device == "cuda" else \
        f"CPU, torch threads {torch.get_num_threads()}"
    print(f"{args.config}: {args.batches} batches of {size}, {where}, packed rows of up to "
          f"{PACK_TOKENS} tokens")
    print(f"real tokens in a padded batch: {statistics.mean(shares):.0%} (mean)")
    print(f"padded step {padded_s / args.batches:.2f} s, "
          f"packed step {packed_s / args.batches:.2f} s"
          f" (median {statistics.median(times[False]):.2f} / "
          f"{statistics.median(times[True]):.2f})")
    print(f"packed / padded time = {packed_s / padded_s:.3f}; losses agree within 0.1% on every "
          "batch")


if __name__ == "__main__":
    main()
