"""Selection rules for N-best rescoring, tuned on development splits of the cached lists and
judged on the held-out rest (issue 44). Reads bench/postprocess_cache.py's cache.

Splits (a rule is chosen on dev only, then reported on test):
  real sentences: dev = every other "cathy" sentence (60), test = the other 104 (60 cathy, LJ
  Speech, ARCTIC, LibriVox, LibriSpeech, JFK); FSDD: dev = speakers george and jackson,
  test = the other four; synthetic sets: dev = the first 8 of the 16 sentences (all three
  voices), test = the other 8.

    .venv/bin/python bench/postprocess_tune.py runs/post_cache.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from speechllm.cascade.postprocess import GatedRescoring, Rescored, choose
from speechllm.text_norm import word_errors

Row = dict


def split(row: Row) -> str:
    if row["set"] == "real":
        if row["id"].startswith("cathy_arctic/"):
            n = int(row["id"].split("arctic_a")[1][:4])
            return "dev" if n % 2 == 0 else "test"
        return "test"
    if row["set"] == "fsdd":
        return "dev" if any(s in row["id"] for s in ("george", "jackson")) else "test"
    # synthetic: the first 8 of the 16 sentences (all three voices) are dev
    return "dev" if int(row["id"].rsplit("/", 1)[1]) % 16 < 8 else "test"


def errors(rows: list[Row], pick: Callable[[dict], str]) -> tuple[np.ndarray, np.ndarray]:
    e, n = [], []
    for r in rows:
        text = " ".join(t for t in (pick(p) for p in r["parts"]) if t)
        err, words = word_errors(r["ref"], text)
        e.append(err)
        n.append(words)
    return np.array(e), np.array(n)


def paired(base: np.ndarray, new: np.ndarray, words: np.ndarray, seed: int = 0
           ) -> tuple[float, float, float, float]:
    """(WER, relative change, CI low, CI high of the WER difference)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(words), (2000, len(words)))
    diff = (new[picks].sum(1) - base[picks].sum(1)) / words[picks].sum(1)
    wer_new, wer_base = new.sum() / words.sum(), base.sum() / words.sum()
    return (float(wer_new), float((wer_new - wer_base) / max(wer_base, 1e-9)),
            float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5)))


LM_FIELD = "lm"  # which scoring LM's log-likelihoods the rules read (--lm-field)


def rule(g: GatedRescoring) -> Callable[[dict], str]:
    return lambda part: choose([Rescored(h["text"], h["asr"], h.get(LM_FIELD, h["lm"]), 0.0)
                                for h in part["hyps"]], g)


def print_tables(by: dict[tuple[str, str], list[Row]], sets: list[str],
                 base_rule: Callable[[dict], str], base_name: str,
                 rules: dict[str, Callable[[dict], str]]) -> None:
    """Held-out ("test") then dev: each set's WER under `base_rule` and under each rule, with
    the relative change and the paired 95% interval of the difference."""
    for part_name in ("test", "dev"):
        print(f"## {part_name}\n")
        print(f"| set | utterances | {base_name} | " + " | ".join(rules) + " |")
        print("|---" * (len(rules) + 3) + "|")
        for s in sets:
            data = by[s, part_name]
            if not data:
                continue
            base, words = errors(data, base_rule)
            cells = []
            for f in rules.values():
                new, _ = errors(data, f)
                w, rel, low, high = paired(base, new, words)
                cells.append(f"{w:.4f} ({rel:+.1%}; {low:+.4f}, {high:+.4f})")
            print(f"| {s} | {len(data)} | {base.sum() / words.sum():.4f} | "
                  + " | ".join(cells) + " |")
        print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", type=Path)
    ap.add_argument("--correct", action="store_true",
                    help="also the gated generative corrector (Qwen2.5 0.5B; asked only where "
                         "the chosen gate opens)")
    ap.add_argument("--lm-field", default="lm", help="the cache's LM scores to use: lm (Gemma "
                    "3 270M) or one added by bench/postprocess_rescore_with.py")
    args = ap.parse_args()
    global LM_FIELD
    LM_FIELD = args.lm_field
    rows = [json.loads(x) for x in args.cache.read_text().splitlines() if x]
    sets = sorted({r["set"] for r in rows})
    by = {(s, part): [r for r in rows if r["set"] == s and split(r) == part]
          for s in sets for part in ("dev", "test")}
    none = rule(GatedRescoring(weight=0.0))

    # Tune on dev: the rule with the lowest total dev errors among those that never make any
    # dev set worse than none (every set's dev errors <= none's).
    grid = [GatedRescoring(weight=w, min_words=k, max_margin=m, min_gain=d, max_edit=e)
            for w, k, m, d, e in itertools.product((0.1, 0.2, 0.3, 0.5, 1.0), (1, 3, 4),
                                                    (0.1, 0.2, 0.4, 10.0), (0.0, 0.1, 0.3),
                                                    (1, 2, 99))]
    base_dev = {s: errors(by[s, "dev"], none)[0].sum() for s in sets}
    best, best_total = None, None
    for g in grid:
        dev = {s: errors(by[s, "dev"], rule(g))[0].sum() for s in sets}
        if any(dev[s] > base_dev[s] for s in sets):
            continue
        total = sum(dev.values())
        if best_total is None or total < best_total:
            best, best_total = g, total
    print(f"chosen on dev: {best} (dev errors {best_total} against none's "
          f"{sum(base_dev.values())})\n")
    rules = {"rescore, old rule (w=0.3, always)": rule(GatedRescoring(weight=0.3, min_words=1,
                                                                       max_margin=1e9,
                                                                       min_gain=0.0,
                                                                       max_edit=10**6)),
             "rescore, gated (tuned)": rule(best)}
    if args.correct:
        from speechllm.asr.base import Hypothesis
        from speechllm.cascade.postprocess import GenerativeCorrector
        from speechllm.llm.llama_cpp import LlamaCppChat

        corrector = GenerativeCorrector(LlamaCppChat(), gate=dataclasses.replace(best, max_edit=2))
        memo: dict[tuple[str, ...], str] = {}

        def corrected(part: dict) -> str:
            key = tuple(h["text"] for h in part["hyps"])
            if key not in memo:
                memo[key] = corrector.select([Hypothesis(h["text"], h["asr"], 0)
                                              for h in part["hyps"]])
            return memo[key]

        rules["correct, gated (same gate)"] = corrected
    print_tables(by, sets, none, "none", rules)

if __name__ == "__main__":
    main()
