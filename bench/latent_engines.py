"""Latent inference speed: fp32 PyTorch vs the quantized GGUF through llama.cpp, same model,
same spliced prompts, measured in one run (alternating, so machine noise hits both).

Decoding is forced to `--tokens` new tokens (end tokens ignored) so tokens/s is measured on
equal work; prefill (prompt + audio embeddings -> first token) is timed separately.

    .venv/bin/python bench/latent_engines.py runs/latent_digits/final [--items 10] [--tokens 32]
"""

from __future__ import annotations

import argparse
import statistics

from common import FSDD, fsdd_items  # bench/ is on sys.path when run

from speechllm.audio import load
from speechllm.latent.model import LatentSpeechLM
from speechllm.speechlm import Request


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--items", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=32)
    args = ap.parse_args()
    rows = fsdd_items(every=max(1, 300 // args.items))[: args.items]
    audios = [load(FSDD / r["audio"]) for r in rows]
    engines = {"torch fp32": LatentSpeechLM.from_pretrained(args.model),
               "llama.cpp gguf": LatentSpeechLM.from_pretrained(args.model, engine="llama.cpp")}
    for lm in engines.values():
        lm.end_ids = set()  # decode exactly --tokens tokens
        lm.respond(Request(audio=audios[0], system="Transcribe the audio exactly.",
                           max_tokens=2))  # warm-up
    rate: dict[str, list[float]] = {k: [] for k in engines}
    prefill: dict[str, list[float]] = {k: [] for k in engines}
    for audio in audios:
        for name, lm in engines.items():
            r = lm.respond(Request(audio=audio, system="Transcribe the audio exactly.",
                                   max_tokens=args.tokens))
            decode = r.timings.stage("decode")
            prefill[name].append(r.timings.stage("prefill"))
            rate[name].append((args.tokens - 1) / decode if decode else float("nan"))
    base = statistics.median(rate["torch fp32"])
    print(f"{len(audios)} FSDD clips, {args.tokens} new tokens each, model {args.model}")
    print("| engine | decode tokens/s (median) | ratio | prefill s (median) |")
    print("|---|---|---|---|")
    for name in engines:
        med = statistics.median(rate[name])
        print(f"| {name} | {med:.1f} | {med / base:.2f}x | "
              f"{statistics.median(prefill[name]):.3f} |")


if __name__ == "__main__":
    main()
