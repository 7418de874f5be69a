"""Does the toolkit's ASR lose anything against faster-whisper called directly?

Transcribes every FSDD test recording (300 real utterances) three ways with the same model and
settings (beam 5, int8, language detection on, no VAD):
  direct-file     faster_whisper.WhisperModel(dir).transcribe(path)   (PyAV decode + resample)
  direct-samples  the same, given the toolkit's 16 kHz samples
  toolkit         speechllm FasterWhisperASR.transcribe(speechllm.audio.load(path))
and prints WER/digit accuracy for each, plus how often the outputs are identical.

    .venv/bin/python bench/asr_wrapper.py [--model whisper-base] [--every 1]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from common import FSDD, fsdd_items  # bench/ is on sys.path when run
from faster_whisper import WhisperModel
from rich.progress import track

from speechllm import models
from speechllm.asr.faster_whisper import FasterWhisperASR
from speechllm.audio import load
from speechllm.text_norm import normalize, wer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="whisper-base")
    ap.add_argument("--every", type=int, default=1)
    args = ap.parse_args()
    items = fsdd_items(args.every)
    toolkit = FasterWhisperASR(args.model)
    # Same thread count as the toolkit: int8 sums can differ in the last bits with it.
    direct = WhisperModel(str(models.ensure(args.model)), compute_type="int8",
                          cpu_threads=os.cpu_count() or 1)
    out: dict[str, list[str]] = {"direct-file": [], "direct-samples": [], "toolkit": []}
    seconds = dict.fromkeys(out, 0.0)
    for it in track(items, description=f"{args.model} x3"):
        path = FSDD / it["audio"]
        audio = load(path)
        for name, source in (("direct-file", str(path)),
                             ("direct-samples", np.asarray(audio.samples))):
            t = time.perf_counter()
            segments, _ = direct.transcribe(source, beam_size=5)
            out[name].append(" ".join(s.text.strip() for s in segments).strip())
            seconds[name] += time.perf_counter() - t
        t = time.perf_counter()
        out["toolkit"].append(toolkit.transcribe(audio).text)
        seconds["toolkit"] += time.perf_counter() - t
    refs = [it["text"] for it in items]
    print(f"\n{args.model} on {len(items)} FSDD test recordings\n")
    print("| path | WER | digit accuracy | seconds/utt |")
    print("|---|---|---|---|")
    for name, hyps in out.items():
        acc = np.mean([normalize(h).split()[:1] == [r] for r, h in zip(refs, hyps, strict=True)])
        print(f"| {name} | {wer(refs, hyps):.3f} | {acc:.3f} | {seconds[name] / len(items):.2f} |")
    same = sum(a == b for a, b in zip(out["toolkit"], out["direct-samples"], strict=True))
    same_file = sum(a == b for a, b in zip(out["toolkit"], out["direct-file"], strict=True))
    print(f"\nidentical text, toolkit vs direct-samples: {same}/{len(items)}")
    print(f"identical text, toolkit vs direct-file:    {same_file}/{len(items)}")


if __name__ == "__main__":
    main()
