"""Minimum-Bayes-risk choice over the N-best lists (issue 44): instead of the list's most
likely reading, the one with the fewest expected word errors against the others, each
weighted by its posterior `softmax(scale * (asr + weight * lm))` (Whisper's mean token
log-probability and the scoring LM's log-likelihood per word, as the rescorer reads them).

Tuned on the development splits of bench/postprocess_tune.py (same splits), judged on the
held-out rest, against the plain 1-best and the shipped gated rescorer, with paired
bootstrap intervals. Reads bench/postprocess_cache.py's cache.

    .venv/bin/python bench/postprocess_mbr.py runs/post_cache.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from postprocess_tune import errors, print_tables, split  # bench/ is on sys.path when run

from speechllm.cascade.postprocess import GatedRescoring, Rescored, choose
from speechllm.text_norm import word_errors


def mbr(scale: float, weight: float) -> Callable[[dict], str]:
    def pick(part: dict) -> str:
        hyps = [h for h in part["hyps"] if h["text"].strip()]
        if len(hyps) < 2:
            return part["hyps"][0]["text"] if part["hyps"] else ""
        score = np.array([h["asr"] + weight * h["lm"] for h in hyps]) * scale
        post = np.exp(score - score.max())
        post /= post.sum()
        risk = [sum(p * word_errors(o["text"], h["text"])[0] for o, p in zip(hyps, post,
                                                                             strict=True))
                for h in hyps]
        return str(hyps[int(np.argmin(risk))]["text"])  # ties: the earlier (likelier) one
    return pick


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", type=Path)
    args = ap.parse_args()
    rows = [json.loads(x) for x in args.cache.read_text().splitlines() if x]
    sets = sorted({r["set"] for r in rows})
    by = {(s, part): [r for r in rows if r["set"] == s and split(r) == part]
          for s in sets for part in ("dev", "test")}

    def one_best(part: dict) -> str:
        return str(part["hyps"][0]["text"]) if part["hyps"] else ""

    def gated(part: dict) -> str:
        return choose([Rescored(h["text"], h["asr"], h["lm"], 0.0) for h in part["hyps"]],
                      GatedRescoring())

    base_dev = {s: errors(by[s, "dev"], one_best)[0].sum() for s in sets}
    best, best_total = None, None
    for scale, weight in itertools.product((1, 2, 5, 10, 20, 50), (0.0, 0.05, 0.1, 0.2, 0.5)):
        dev = {s: errors(by[s, "dev"], mbr(scale, weight))[0].sum() for s in sets}
        total = sum(dev.values())
        print(f"dev scale {scale:>4} weight {weight:.2f}: {total} errors "
              f"(1-best {sum(base_dev.values())})")
        if any(dev[s] > base_dev[s] for s in sets):
            continue
        if best_total is None or total < best_total:
            best, best_total = (scale, weight), total
    print(f"\nchosen on dev: {best}\n")
    if best is None:
        return
    rules = {"rescore, gated (shipped)": gated, f"MBR {best}": mbr(*best)}
    print_tables(by, sets, one_best, "1-best", rules)

if __name__ == "__main__":
    main()
