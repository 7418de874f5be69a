"""Which unit settings keep the digits apart across the synthetic-to-real gap?

A cheap proxy for the token recipe (which takes 30 min per try): units are fitted on the
recipe's synthetic set for several k and rates, and each real FSDD recording of the *dev
speakers* is labelled with the digit of its nearest synthetic clip by edit distance between
deduplicated unit sequences (1-NN). The chosen setting is then used by the recipe, which
reports all 300 recordings and the non-dev speakers apart.

    .venv/bin/python bench/unit_choice.py [--dev george,jackson] [--ks 100,200,500,1000]

Features are cached in runs/unit_choice/ (the Whisper encoder dominates the time).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from speechllm.audio import load  # noqa: E402
from speechllm.data import read_manifest  # noqa: E402
from speechllm.tokens.base import dedup  # noqa: E402
from speechllm.tokens.semantic import KMeansUnits, UnitFeatures, UnitsConfig  # noqa: E402


def features(manifest: Path, cache: Path, window: float, fitted: bool = False,
             shortest: float = 2.0) -> tuple[list[np.ndarray], list]:
    items = read_manifest(manifest)
    # the cache is only good for the manifest it was made from (new synthetic data, new states)
    stamp = f"{manifest.resolve()}|{manifest.stat().st_mtime_ns}"
    if cache.is_file():
        data = np.load(cache, allow_pickle=True)
        if "stamp" in data and str(data["stamp"]) == stamp:
            return list(data["feats"]), items
    feats = UnitFeatures(UnitsConfig(stride=1, window_seconds=window, fitted_windows=fitted,
                                     shortest_window=shortest))
    out: list[np.ndarray] = []
    for start in range(0, len(items), 32):
        out += feats([load(it.audio) for it in items[start:start + 32]])
        print(f"  {manifest.parent.name}: {min(start + 32, len(items))}/{len(items)}",
              flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    arr = np.empty(len(out), dtype=object)
    arr[:] = out
    np.savez(cache, feats=arr, stamp=stamp)
    return out, items


def pool(f: np.ndarray, stride: int) -> np.ndarray:
    pad = (-len(f)) % stride
    if pad:
        f = np.concatenate([f, np.repeat(f[-1:], pad, axis=0)])
    return f.reshape(-1, stride, f.shape[1]).mean(axis=1)


def edit(a: np.ndarray, b: np.ndarray) -> int:
    prev = np.arange(len(b) + 1)
    for i in range(1, len(a) + 1):
        cur = np.empty_like(prev)
        cur[0] = i
        sub = prev[:-1] + (b != a[i - 1])
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, sub[j - 1])
        prev = cur
    return int(prev[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dev", default="george,jackson")
    ap.add_argument("--ks", default="100,200,500,1000")
    ap.add_argument("--strides", default="1,2")
    ap.add_argument("--window", type=float, default=4.0)
    ap.add_argument("--fitted-windows", action="store_true", help="Each clip padded to the "
                    "shortest of the window, half, a quarter ... that holds it.")
    ap.add_argument("--shortest-window", type=float, default=2.0)
    args = ap.parse_args()
    cache = ROOT / "runs" / "unit_choice"
    tag = f"-w{args.window:g}" + (f"-fitted{args.shortest_window:g}" if args.fitted_windows
                                  else "")
    if tag == "-w4":
        tag = ""  # the cache's names before windows were a choice
    train, titems = features(ROOT / "data/latent_digits/manifest.jsonl",
                             cache / f"synthetic{tag}.npz", args.window, args.fitted_windows,
                             args.shortest_window)
    real, ritems = features(ROOT.parent / "shared/data/fsdd-test/manifest.jsonl",
                            cache / f"fsdd{tag}.npz", args.window, args.fitted_windows,
                            args.shortest_window)
    dev = set(args.dev.split(","))
    digit_train = [n for n, it in enumerate(titems) if it.fields.get("digit") is not None]
    dev_real = [n for n, it in enumerate(ritems) if it.fields.get("speaker") in dev]
    print(f"{len(digit_train)} synthetic digit clips, {len(dev_real)} dev recordings "
          f"({', '.join(sorted(dev))})")
    print("| k | units/s | 1-NN dev accuracy | fit s |")
    print("|---|---|---|---|")
    for stride in (int(s) for s in args.strides.split(",")):
        tr = [pool(f, stride) for f in train]
        rl = [pool(real[n], stride) for n in dev_real]
        for k in (int(x) for x in args.ks.split(",")):
            t0 = time.perf_counter()
            config = UnitsConfig(k=k, stride=stride, window_seconds=args.window,
                                 fitted_windows=args.fitted_windows,
                                 shortest_window=args.shortest_window)
            x = np.concatenate(tr)
            mean, std = x.mean(0), x.std(0) + 1e-5
            cluster = __import__("sklearn.cluster", fromlist=["MiniBatchKMeans"])
            km = cluster.MiniBatchKMeans(n_clusters=k, random_state=0, n_init=3,
                                         batch_size=4096, max_iter=200)
            rng = np.random.default_rng(0)
            z = (x - mean) / std
            km.fit(z[rng.choice(len(z), min(len(z), 200_000), replace=False)])
            tok = KMeansUnits(config, km.cluster_centers_, mean, std)
            fit_s = time.perf_counter() - t0
            ref = [(dedup(tok.assign(tr[n]))[0], titems[n].fields["digit"]) for n in digit_train]
            correct = 0
            for n, f in zip(dev_real, rl, strict=True):
                q = dedup(tok.assign(f))[0]
                best = min(ref, key=lambda r, q=q: edit(q, r[0]) / max(len(q), len(r[0])))
                correct += int(best[1] == ritems[n].fields["digit"])
            print(f"| {k} | {50 / stride:.0f} | {correct / len(dev_real):.3f} | {fit_s:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
