"""Whisper encoder time per clip at several window settings: what padding short clips costs.

The units tokenizer pads every clip to its window (the token recipe's `--window 4`), and the
recipe's clips mostly last under 2 s, so much of the encoder's work is padding. This times
the units' feature path (`UnitFeatures`, batches of 8) on the same clips at each setting,
rotating the settings round by round, and prints each median as a ratio to the first
setting's (same run). A setting is a window in seconds, or `fitted`: the first window with
`fitted_windows` (each clip in the shortest of the window, half, a quarter, ... that holds it).

A shorter window gives other states, so other units. With `--units FOLDER` (a fitted unit
tokenizer) it also prints how many frames get the same unit as under the first setting, by
that tokenizer's centroids: how far the change moves the units before any refitting.

    .venv/bin/python bench/encoder_window.py data/latent_digits/manifest.jsonl \\
        data/token_speak/manifest.jsonl --windows 4,fitted --units runs/token_digits/units
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from speechllm.audio import load  # noqa: E402
from speechllm.data import read_manifest  # noqa: E402
from speechllm.tokens.semantic import KMeansUnits, UnitFeatures, UnitsConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("manifests", type=Path, nargs="+",
                        help="Manifests of clips; --clips are drawn from each.")
    parser.add_argument("--windows", default="4,fitted", help="Settings: windows in seconds "
                        "or 'fitted' (the first window, fitted to each clip); the first is "
                        "the baseline.")
    parser.add_argument("--clips", type=int, default=96, help="Clips drawn per manifest.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encoder", default="whisper-base")
    parser.add_argument("--units", type=Path, help="A fitted unit tokenizer: also compare "
                        "each setting's units with the first's.")
    args = parser.parse_args()
    rng = random.Random(0)
    items = []
    for manifest in args.manifests:
        rows = read_manifest(manifest)
        items += rng.sample(rows, min(args.clips, len(rows)))
    audios = [load(item.audio) for item in items]
    names = args.windows.split(",")
    first = float(names[0])
    settings = {name: UnitFeatures(UnitsConfig(
        encoder=args.encoder, window_seconds=first if name == "fitted" else float(name),
        fitted_windows=name == "fitted")) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    states: dict[str, list[np.ndarray]] = {}
    for _ in range(args.rounds):
        for name, features in settings.items():
            began = time.perf_counter()
            states[name] = features(audios)
            times[name].append(time.perf_counter() - began)
    mean = sum(a.duration for a in audios) / len(audios)
    print(f"{len(audios)} clips from {len(args.manifests)} manifest(s), {mean:.2f} s on "
          f"average, {args.rounds} rounds")
    tok = KMeansUnits.load(args.units) if args.units else None
    units = {name: [tok.assign(s) for s in states[name]] for name in names} if tok else {}
    print("| setting | ms per clip | vs the first |" + (" same unit as the first |" if tok else ""))
    print("|---|---|---|" + ("---|" if tok else ""))
    base = statistics.median(times[names[0]])
    for name in names:
        median = statistics.median(times[name])
        row = f"| {name} | {1000 * median / len(audios):.1f} | {median / base:.2f}x |"
        if tok:
            same = sum(int((a == b).sum()) for a, b in zip(units[name], units[names[0]],
                                                            strict=True))
            total = sum(len(a) for a in units[name])
            row += f" {100 * same / total:.1f}% |"
        print(row)


if __name__ == "__main__":
    main()
