"""The N-best path against the plain path, on real sentences and long passages (issue 44).

For every clip: the plain transcript (`transcribe`, the cascade's ASR options: a 20 s window
for short turns, faster-whisper's full path beyond it), the N-best path's 1-best as the cascade
now uses it (`nbest_segments`: segment by segment, joined), and the N-best path as it was
(one beam search over one window, truncating longer audio). Corpus WER per set with a 95%
bootstrap interval, and the paired difference against the plain path.

    .venv/bin/python bench/nbest_long.py ../shared/data/real-sentences/manifest.jsonl \
        data/long_passages/manifest.jsonl [--model whisper-base] [--n 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rich.progress import track

from speechllm.asr.faster_whisper import FasterWhisperASR, looping
from speechllm.audio import load
from speechllm.cascade.pipeline import CascadeConfig
from speechllm.data import read_manifest
from speechllm.text_norm import word_errors

PATHS = ("plain", "nbest (now)", "nbest (before)")


def corpus_wer(errors: np.ndarray, words: np.ndarray, rng: np.random.Generator
               ) -> tuple[float, float, float]:
    value = errors.sum() / words.sum()
    picks = rng.integers(0, len(words), (1000, len(words)))
    draws = errors[picks].sum(1) / words[picks].sum(1)
    return float(value), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="+", type=Path)
    parser.add_argument("--model", default="whisper-base")
    parser.add_argument("--n", type=int, default=5)
    args = parser.parse_args()
    asr = FasterWhisperASR(args.model)
    options = CascadeConfig().asr
    rng = np.random.default_rng(0)
    for manifest in args.manifests:
        items = read_manifest(manifest)
        errors = {p: [] for p in PATHS}
        words: list[int] = []
        loops = {p: 0 for p in PATHS}
        seconds = {p: 0.0 for p in PATHS}
        durations = []
        for item in track(items, description=manifest.parent.name):
            audio = load(item.audio)
            durations.append(audio.duration)
            began = time.perf_counter()
            texts = {"plain": asr.transcribe(audio, options).text}
            seconds["plain"] += time.perf_counter() - began
            began = time.perf_counter()
            parts = asr.nbest_segments(audio, args.n, options)
            texts["nbest (now)"] = " ".join(p.hypotheses[0].text for p in parts)
            seconds["nbest (now)"] += time.perf_counter() - began
            began = time.perf_counter()
            texts["nbest (before)"] = asr._beam(np.ascontiguousarray(audio.samples), args.n,
                                                options)[1][0].text
            seconds["nbest (before)"] += time.perf_counter() - began
            ref = item.text or ""
            words.append(word_errors(ref, ref)[1])
            for p in PATHS:
                errors[p].append(word_errors(ref, texts[p])[0])
                loops[p] += looping(texts[p])
        n_words = np.array(words)
        print(f"\n{manifest} ({len(items)} clips, {min(durations):.1f}-{max(durations):.1f} s, "
              f"{n_words.sum()} words; {args.model}, {args.n}-best)")
        print("| path | WER [95% CI] | paired vs plain [95% CI] | looping outputs | ASR s/clip |")
        print("|---|---|---|---|---|")
        base = np.array(errors["plain"])
        for p in PATHS:
            e = np.array(errors[p])
            value, low, high = corpus_wer(e, n_words, rng)
            picks = rng.integers(0, len(e), (1000, len(e)))
            diff = (e[picks].sum(1) - base[picks].sum(1)) / n_words[picks].sum(1)
            paired = (f"{value - base.sum() / n_words.sum():+.4f} "
                      f"[{np.percentile(diff, 2.5):+.4f}, {np.percentile(diff, 97.5):+.4f}]")
            print(f"| {p} | {value:.4f} [{low:.4f}, {high:.4f}] | "
                  f"{'-' if p == 'plain' else paired} | {loops[p]} | "
                  f"{seconds[p] / len(items):.2f} |")


if __name__ == "__main__":
    main()
