"""Speaking many phrases at once against one at a time, on a trained word-by-word token LM.

The held-out phrases are spoken one at a time (`speak_words`, the baseline) and then in
batches of each `--sizes` (`speak_words_batch`), alternating the order between rounds. Each
batched run must say exactly what the phrases said alone (greedy decoding; the rows of a batch
never see each other); the figure is its speaking time as a ratio of the one-at-a-time time
measured in the same round, and units per second.

    .venv/bin/python bench/batched_speaking.py runs/token_digits/final --phrases 32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="a saved token model trained with interleave_words")
    ap.add_argument("--phrases", type=int, default=32, help="how many held-out phrases")
    ap.add_argument("--sizes", default="4,8,16", help="batch sizes, comma-separated")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    from speechllm.tokens.model import TokenSpeechLM

    files = [ROOT / "recipes/token_digits/speak_heldout.txt",
             ROOT / "recipes/token_digits/speak_heldout_more.txt"]
    texts = [t for f in files for t in f.read_text().splitlines() if t.strip()][: args.phrases]
    model = TokenSpeechLM.from_pretrained(args.model)
    sizes = [int(s) for s in args.sizes.split(",")]
    model.speak_words_batch(texts[:2])  # warm-up
    alone_s: list[float] = []
    batched_s: dict[int, list[float]] = {s: [] for s in sizes}
    units = 0
    for round_ in range(args.rounds):
        began = time.perf_counter()
        alone = [model.speak_words(t) for t in texts]
        alone_time = time.perf_counter() - began
        units = sum(len(u) for words in alone for u in words)
        alone_s.append(alone_time)
        for size in sizes if round_ % 2 == 0 else reversed(sizes):
            began = time.perf_counter()
            together = model.speak_words_batch(texts, batch_size=size)
            batched_s[size].append(time.perf_counter() - began)
            same = sum(a == b for a, b in zip(alone, together, strict=True))
            if same != len(texts):
                raise SystemExit(f"batch {size}: {len(texts) - same} of {len(texts)} phrases "
                                 "said differently than alone")
    base = statistics.median(alone_s)
    print(f"{len(texts)} phrases, {units} units; {args.rounds} rounds, medians\n")
    print("| speaking | seconds | units/s | time vs one at a time |")
    print("|---|---|---|---|")
    print(f"| one at a time | {base:.1f} | {units / base:.0f} | 1.00 |")
    for size, times in batched_s.items():
        t = statistics.median(times)
        print(f"| batches of {size} | {t:.1f} | {units / t:.0f} | {t / base:.2f} |")


if __name__ == "__main__":
    main()
