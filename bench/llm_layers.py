"""A training step of the token LM with some of its LLM's layers (`llm_layers`) against the
whole LLM, on a recipe's real batches, timed in the same run.

Each batch is drawn as the trainer draws it (bench/packed_batches.py's `draw_batches`), then
trained one step by each model, alternating which goes first, with LoRA and AdamW as the
trainer sets them up (learning rate 0, so every step sees the same weights). The figure is each
cut model's step time as a ratio of the whole model's. What the cut costs in quality is in
docs/token_digits/results.md#recipe_speed ("Tried: a shallower LLM").

    .venv/bin/python bench/llm_layers.py recipes/token_digits/config.json --batches 8 \
        --layers 9 --layers 0,1,2,3,4,5,6,7,8,17

A token config only: its units come from the shared units cache (run the recipe, or
`speechllm tokens fit` on the same clips, first).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--layers", action="append", required=True,
                    help="a cut to time: a count (the first N) or comma-separated layer numbers")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from packed_batches import draw_batches, timed_step

    from speechllm.lm.lora import add_lora
    from speechllm.tokens.model import TokenLMConfig, TokenSpeechLM
    from speechllm.train import load_config

    cfg = load_config(args.config)
    if not isinstance(cfg.model, TokenLMConfig):
        raise SystemExit(f"{args.config}: not a token model config")
    cuts: dict[str, Any] = {"all": None}
    for text in args.layers:
        picks = [int(p) for p in text.split(",")]
        cuts[text] = picks[0] if len(picks) == 1 else tuple(picks)
    models: dict[str, tuple[Any, Any]] = {}
    for name, cut in cuts.items():
        model = TokenSpeechLM(dataclasses.replace(cfg.model, llm_layers=cut))
        add_lora(model, cfg.model)
        params = [*model.adapter.parameters(),
                  *(p for p in model.lm.parameters() if p.requires_grad)]
        models[name] = model, torch.optim.AdamW(params, lr=0.0)
    whole = models["all"][0]
    batches = draw_batches(cfg, whole, args.batches + 1, cfg.train.batch_size, args.seed)

    def step(name: str, b: tuple) -> float:
        return timed_step(*models[name], b)[0]

    for name in models:
        step(name, batches[0])  # warm-up: first-call allocations
    times: dict[str, float] = dict.fromkeys(models, 0.0)
    order = list(models)
    for n, b in enumerate(batches[1:]):
        for name in order if n % 2 == 0 else order[::-1]:
            times[name] += step(name, b)
    total = len(whole.lm.get_base_model().model.layers)
    print(f"{args.config}: {args.batches} batches of {cfg.train.batch_size}, CPU, torch "
          f"threads {torch.get_num_threads()}, {cfg.model.llm} ({total} layers)")
    print("| layers kept | count | step s | time vs all |")
    print("|---|---|---|---|")
    for name, model_optim in models.items():
        kept = len(model_optim[0].lm.get_base_model().model.layers)
        print(f"| {name} | {kept} | {times[name] / args.batches:.2f} | "
              f"{times[name] / times['all']:.2f} |")


if __name__ == "__main__":
    main()
