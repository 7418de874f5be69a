"""Overhead of the evaluation harness itself, relative to model time, on the FSDD set.

Baseline: the bare loop a user would write (audio preloaded, `lm.respond` per item, nothing
else). Harness: `speechllm.eval.runner.run` on the same items (reading the audio, perturbing,
scoring, journaling each item to SQLite with its timings). Both use one model instance and
alternate, twice each, so machine noise hits both alike. Overhead = harness wall time /
bare loop wall time - 1.

    .venv/bin/python bench/eval_overhead.py [--asr whisper-base] [--every 1] [--perturb ...]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

from common import FSDD  # bench/ is on sys.path when run

from speechllm.approach import build
from speechllm.audio import load
from speechllm.data import read_manifest
from speechllm.errors import NoSpeechError
from speechllm.eval import runner
from speechllm.eval.backends import Job, Serial
from speechllm.eval.journal import Journal
from speechllm.eval.perturb import parse
from speechllm.eval.tasks import make_task


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--asr", default="whisper-base")
    ap.add_argument("--task", default="asr")
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--perturb", default=None)
    args = ap.parse_args()

    items = read_manifest(FSDD / "manifest.jsonl")[:: args.every]
    task = make_task(args.task)
    perturbation = parse(args.perturb) if args.perturb else None
    lm = build({"approach": "cascade", "asr": args.asr, "tts": None})
    job = Job(lambda: lm, task, perturbation)
    audios = [load(it.audio) for it in items]
    if perturbation is not None:
        audios = [perturbation.apply(a, seed=it.line) for a, it in zip(audios, items, strict=True)]

    def plain(it, audio) -> None:  # the loop a user would write, minding clips with no speech
        with contextlib.suppress(NoSpeechError):
            task.score(it, lm.respond(task.request(it, audio)))

    plain(items[1], audios[1])  # warm-up

    bare, harness, inside = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(2):
            start = time.perf_counter()
            for it, audio in zip(items, audios, strict=True):
                plain(it, audio)
            bare.append(time.perf_counter() - start)

            journal = Journal(Path(tmp) / f"runs{rep}.sqlite")
            start = time.perf_counter()
            summary = runner.run(job, items, journal, "r", {"rep": rep}, Serial(lm))
            harness.append(time.perf_counter() - start)
            inside.append(summary.model_seconds)
            journal.close()
            print(f"rep {rep}: bare loop {bare[-1]:.1f} s, harness {harness[-1]:.1f} s "
                  f"(model time inside {inside[-1]:.1f} s)")
    b, h, m = sum(bare), sum(harness), sum(inside)
    print(f"\n{len(items)} FSDD items x 2, {args.asr}, task {args.task}, "
          f"perturb {args.perturb or 'clean'}")
    print(f"harness / bare loop      = {h / b:.3f}  (overhead {100 * (h / b - 1):+.1f}%)")
    print(f"harness / its model time = {h / m:.3f}  (overhead {100 * (h / m - 1):+.1f}%)")


if __name__ == "__main__":
    main()
