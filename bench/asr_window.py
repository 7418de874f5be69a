"""Accuracy and speed of shorter Whisper encoder windows on real and synthetic speech.

Whisper pads every input to 30 s; `ASROptions(window_seconds=W)` encodes a W-second window
instead for utterances that fit. This checks what that costs in WER, on the real FSDD
recordings and on synthesised sentences (Piper + two espeak-ng voices), against the same
one-pass decoder at 30 s and against faster-whisper's own transcribe (with temperature
fallback). Language is fixed to English; beam 5.

    .venv/bin/python bench/asr_window.py [--model whisper-base] [--every 2]
"""

from __future__ import annotations

import argparse
import time

from common import FSDD, fsdd_items, test_voices  # bench/ is on sys.path when run
from rich.progress import track

from speechllm.asr.base import ASROptions
from speechllm.asr.faster_whisper import FasterWhisperASR
from speechllm.audio import load
from speechllm.text_norm import wer
from speechllm.tts.base import synthesize

SENTENCES = [
    "What is the capital of France?",
    "Set a timer for fifteen minutes.",
    "Turn off the lights in the living room.",
    "How many ounces are in a pound?",
    "Remind me to call my mother at six.",
    "Who wrote the novel Pride and Prejudice?",
    "Add eggs, milk and bread to my shopping list.",
    "Tell me a fun fact about octopuses, and then tell me another one about whales.",
]
CONFIGS: dict[str, ASROptions] = {
    "faster-whisper transcribe (30 s)": ASROptions(language="en"),
    "one pass, 30 s": ASROptions(language="en", window_seconds=30),
    "one pass, 20 s": ASROptions(language="en", window_seconds=20),
    "one pass, 15 s": ASROptions(language="en", window_seconds=15),
    "one pass, 10 s": ASROptions(language="en", window_seconds=10),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="whisper-base")
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--sets", default="FSDD (real),synthetic sentences")
    args = ap.parse_args()
    asr = FasterWhisperASR(args.model)
    items = fsdd_items()
    voices = test_voices()
    sets = {
        "FSDD (real)": [(load(FSDD / it["audio"]), it["text"]) for it in items[:: args.every]],
        "synthetic sentences": [(synthesize(v, s), s) for v in voices for s in SENTENCES],
    }
    sets = {k: v for k, v in sets.items() if k in args.sets.split(",")}
    print(f"\n{args.model}, beam 5, language=en\n")
    print("| set | config | WER | seconds/utt | speed vs 30 s transcribe |")
    print("|---|---|---|---|---|")
    for name, data in sets.items():
        base = None
        # Interleave configs per item so machine noise hits them all alike.
        hyps: dict[str, list[str]] = {c: [] for c in CONFIGS}
        secs = dict.fromkeys(CONFIGS, 0.0)
        for audio, _ in track(data, description=name):
            for c, o in CONFIGS.items():
                t = time.perf_counter()
                hyps[c].append(asr.transcribe(audio, o).text)
                secs[c] += time.perf_counter() - t
        refs = [t for _, t in data]
        for c in CONFIGS:
            base = base or secs[c]
            print(f"| {name} | {c} | {wer(refs, hyps[c]):.3f} | {secs[c] / len(data):.2f} | "
                  f"{base / secs[c]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
