"""How far llama.cpp's log-probabilities stray from PyTorch's on the same weights.

The latent model decodes with either engine: PyTorch on the GGUF dequantised to float32, or
llama.cpp on the GGUF itself. The weights are the same numbers, but llama.cpp rounds the
activations to 8 bits per block before each quantised matrix product and keeps its KV cache
in float16, so the two engines' log-probabilities differ by a small, machine-independent
amount. This measures that amount on plain English text (teacher-forced, every position),
by band of probability, and where the two engines' greedy choices part. The engine parity
test (tests/latent/test_train.py) takes its tolerance from these figures.

    .venv/bin/python bench/engine_parity.py [--llm gemma-3-270m]
"""

from __future__ import annotations

import argparse

import numpy as np

TEXT = ("The quick brown fox jumps over the lazy dog. In 1969, astronauts first walked on the "
        "moon, and the world watched on television. What is the capital of France? The capital "
        "of France is Paris. Seven plus two equals nine, and nine minus four is five. Please "
        "set a timer for ten minutes, then remind me to call my sister about the train times.")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    out: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return out


def main() -> None:
    import torch

    from speechllm.latent.llama_cpp_decode import LlamaCppLatentDecoder
    from speechllm.lm.causal import load_causal_lm

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llm", default="gemma-3-270m")
    args = parser.parse_args()
    lm, tok = load_causal_lm(args.llm)
    fast = LlamaCppLatentDecoder(args.llm)
    ids = tok(TEXT)["input_ids"]
    with torch.no_grad():
        slow = torch.log_softmax(lm(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    a = slow.numpy()
    fast.llm.reset()
    fast.llm._ctx.kv_cache_clear()
    rows = []
    for token in ids:
        fast.llm.eval([token])
        rows.append(fast._logits().astype(np.float64))
    b = log_softmax(np.stack(rows))
    print(f"{args.llm}: {len(ids)} positions, |log p(llama.cpp) - log p(PyTorch)| in nats")
    print("| tokens with PyTorch p >= | tokens | median | p99 | max |")
    print("|---|---:|---:|---:|---:|")
    for floor in (0.3, 0.05, 1e-3, 1e-4):
        picked = a >= np.log(floor)
        d = np.abs(a - b)[picked]
        print(f"| {floor:g} | {picked.sum()} | {np.median(d):.3f} | {np.quantile(d, 0.99):.3f} "
              f"| {d.max():.3f} |")
    top2 = np.sort(a, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    parted = a.argmax(axis=1) != b.argmax(axis=1)
    print(f"greedy choices that differ: {parted.sum()} of {len(ids)}, at PyTorch margins "
          f"{np.round(margin[parted], 3).tolist()} nats (smallest margin anywhere "
          f"{margin.min():.3f})")
    tv = 0.5 * np.abs(np.exp(a) - np.exp(b)).sum(axis=1)
    print(f"total variation per position: median {np.median(tv):.4f}, max {tv.max():.4f}")


if __name__ == "__main__":
    main()
