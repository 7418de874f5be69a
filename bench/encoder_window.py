"""Whisper encoder time per clip at several window lengths: what padding short clips costs.

The units tokenizer pads every clip to its window (the token recipe's `--window 4`), and the
recipe's understanding clips last under a second, so most of the encoder's work is padding.
This times `CT2WhisperEncoder.encode` on the same clips in batches of 8 at each window,
rotating the windows round by round, and prints each median as a ratio to the first window's
(same run). A shorter window gives other states, so other units: this measures the cost only.

    .venv/bin/python bench/encoder_window.py data/latent_digits/manifest.jsonl --windows 4,2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from speechllm.audio import load  # noqa: E402
from speechllm.eval.manifest import read_manifest  # noqa: E402
from speechllm.latent.encoders import CT2WhisperEncoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("manifest", type=Path, help="A manifest of clips (its first --clips).")
    parser.add_argument("--windows", default="4,2", help="Window lengths in seconds; the "
                        "first is the baseline.")
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encoder", default="whisper-base")
    args = parser.parse_args()
    items = read_manifest(args.manifest)[: args.clips]
    audios = [load(item.audio) for item in items]
    longest = max(a.duration for a in audios)
    windows = [float(w) for w in args.windows.split(",")]
    if longest > min(windows):
        print(f"note: the longest clip is {longest:.2f} s; a shorter window cuts it in two")
    encoders = {w: CT2WhisperEncoder(args.encoder, w) for w in windows}
    times: dict[float, list[float]] = {w: [] for w in windows}
    for _ in range(args.rounds):
        for w, encoder in encoders.items():
            began = time.perf_counter()
            for i in range(0, len(audios), 8):
                encoder.encode(audios[i: i + 8])
            times[w].append(time.perf_counter() - began)
    mean = sum(a.duration for a in audios) / len(audios)
    print(f"{len(audios)} clips, {mean:.2f} s on average, {args.rounds} rounds")
    print("| window s | ms per clip | vs the first |")
    print("|---|---|---|")
    base = statistics.median(times[windows[0]])
    for w in windows:
        median = statistics.median(times[w])
        print(f"| {w:g} | {1000 * median / len(audios):.1f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
