"""Contextual biasing (issue 44): 30 sentences with rare names and terms, spoken by Piper and
espeak-ng en-us (bench/texts/biasing.jsonl, synthesised with `speechllm synth`), each with a
list of 100 candidate phrases of which one or two are said. The cascade's recogniser reads the
list as hotwords; the gated rescorer reads it before each hypothesis.

Scores: recall of the biasing words (each word of a said phrase heard exactly, after
normalisation) and the WER on the other words (errors aligned to the reference's other words,
plus insertions), without and with the context, through the cascade as `speechllm eval` runs
it (task asr, intent transcribe), post-processing none and rescore.

    .venv/bin/speechllm synth bench/texts/biasing.jsonl -o data/biasing \
        --voices piper,espeak:en-us
    .venv/bin/python bench/biasing.py data/biasing/manifest.jsonl
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jiwer
import numpy as np
from rich.progress import track

from speechllm.audio import load
from speechllm.cascade.build import CascadeSpec, build_cascade
from speechllm.data import read_manifest
from speechllm.speechlm import Context, Request
from speechllm.text_norm import normalize


def split_errors(ref: str, hyp: str, bias: set[str]) -> tuple[int, int, int, int]:
    """(bias words heard, bias words, errors on other words, other words)."""
    r, h = normalize(ref).split(), normalize(hyp).split()
    if not h:
        return 0, sum(w in bias for w in r), sum(w not in bias for w in r), \
            sum(w not in bias for w in r)
    out = jiwer.process_words(" ".join(r), " ".join(h))
    heard = other_errors = 0
    for chunk in out.alignments[0]:
        span = r[chunk.ref_start_idx: chunk.ref_end_idx]
        if chunk.type == "equal":
            heard += sum(w in bias for w in span)
        elif chunk.type == "insert":
            other_errors += chunk.hyp_end_idx - chunk.hyp_start_idx
        else:  # substitute / delete: charged to the reference words it covers
            other_errors += sum(w not in bias for w in span)
    return heard, sum(w in bias for w in r), other_errors, sum(w not in bias for w in r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--asr", default="whisper-base")
    args = ap.parse_args()
    items = read_manifest(args.manifest)
    rows = []
    for post in ("none", "rescore"):
        lm = build_cascade(CascadeSpec(asr=args.asr, tts=None, vad=True, postprocess=post))
        for with_context in (False, True):
            totals = np.zeros(4, int)
            per_item = []
            for it in track(items, description=f"{post}, context {with_context}"):
                context = Context(tuple(it.fields["context"])) if with_context else None
                heard = lm.respond(Request(audio=load(it.audio), want_audio=False,
                                           intent="transcribe", context=context)).text
                bias = {w for p in it.fields["bias"] for w in normalize(p).split()}
                counts = split_errors(it.text or "", heard, bias)
                totals += counts
                per_item.append(counts)
            rows.append((post, with_context, totals, np.array(per_item)))
    rng = np.random.default_rng(0)
    print(f"\n{args.manifest} ({len(items)} clips), {args.asr}\n")
    print("| post-processing | context | biasing-word recall [95% CI] | rare-word errors | "
          "other-word WER [95% CI] |")
    print("|---|---|---|---|---|")
    for post, with_context, t, per in rows:
        picks = rng.integers(0, len(per), (2000, len(per)))
        recall = per[picks, 0].sum(1) / per[picks, 1].sum(1)
        other = per[picks, 2].sum(1) / per[picks, 3].sum(1)
        print(f"| {post} | {'100 phrases' if with_context else 'none'} | {t[0] / t[1]:.3f} "
              f"[{np.percentile(recall, 2.5):.3f}, {np.percentile(recall, 97.5):.3f}] | "
              f"{t[1] - t[0]} of {t[1]} | {t[2] / t[3]:.4f} [{np.percentile(other, 2.5):.4f}, "
              f"{np.percentile(other, 97.5):.4f}] |")


if __name__ == "__main__":
    main()
