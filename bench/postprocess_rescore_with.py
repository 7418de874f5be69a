"""Score the cached N-best lists again with another scoring LM (a field per LM in the cache),
for bench/postprocess_tune.py --lm-field (issue 44: does a bigger LM pick better?).

    .venv/bin/python bench/postprocess_rescore_with.py runs/post_cache.jsonl \
        --scorer qwen2.5-0.5b-instruct --field lm_qwen [--sets real,synthetic]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.progress import track

from speechllm import models
from speechllm.asr.base import Hypothesis
from speechllm.cascade.postprocess import NBestRescorer
from speechllm.llm.llama_cpp import LlamaCppScorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", type=Path)
    ap.add_argument("--scorer", default="qwen2.5-0.5b-instruct")
    ap.add_argument("--field", default="lm_qwen")
    ap.add_argument("--sets", default="real,synthetic")
    args = ap.parse_args()
    # any embedded GGUF scores, a chat model too: by its path (the registry names its role)
    path = models.ensure(args.scorer) if args.scorer in models.REGISTRY else args.scorer
    rescorer = NBestRescorer(LlamaCppScorer(path), 0.0)
    rows = [json.loads(x) for x in args.cache.read_text().splitlines() if x]
    wanted = args.sets.split(",")
    for row in track(rows, description=args.scorer):
        if not any(row["set"].startswith(w) for w in wanted):
            continue
        for part in row["parts"]:
            if args.field in part["hyps"][0]:
                continue
            scored = {r.text: r.lm_score for r in rescorer.rank(
                [Hypothesis(h["text"], h["asr"], 0) for h in part["hyps"]])}
            for h in part["hyps"]:
                h[args.field] = scored[h["text"]]
    args.cache.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
