"""Contextual biasing (issue 44): 30 sentences with rare names and terms, spoken by Piper and
espeak-ng en-us (bench/texts/biasing.jsonl, synthesised with `speechllm synth`), each with a
list of 100 candidate phrases of which one or two are said. The cascade's recogniser reads the
list as hotwords; the gated rescorer reads it before each hypothesis.

The first ten sentences (both voices) choose the phrase spotter's threshold; the other twenty
are the held-out figures. Scores: recall of the biasing words (each word of a said phrase
heard exactly, after normalisation) and the WER on the other words (errors aligned to the
reference's other words, plus insertions), without and with the context, through the cascade
as `speechllm eval` runs it (task asr, intent transcribe), post-processing none and rescore.
The phrase spotter runs on the cascade's text, so it is applied to the saved transcripts at
each threshold (the same function the cascade calls).

    .venv/bin/speechllm synth bench/texts/biasing.jsonl -o data/biasing \
        --voices piper,espeak:en-us
    .venv/bin/python bench/biasing.py data/biasing/manifest.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jiwer
import numpy as np
from rich.progress import track

from speechllm.audio import load
from speechllm.cascade.build import CascadeSpec, build_cascade
from speechllm.cascade.phrases import PhraseSpotter
from speechllm.cascade.pipeline import CascadeConfig
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


DEV = 10  # the first ten sentences (both voices) choose the phrase threshold; the rest judge


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--asr", default="whisper-base")
    args = ap.parse_args()
    items = read_manifest(args.manifest)
    sentences = list(dict.fromkeys(it.text for it in items))
    part = {it.audio: "dev" if sentences.index(it.text) < DEV else "test" for it in items}
    heard: dict[tuple[str, bool], list[str]] = {}
    saved = args.manifest.with_name("transcripts.json")  # rescoring again needs no decoding
    if saved.is_file():
        heard = {(k.split("|")[0], k.endswith("True")): v
                 for k, v in json.loads(saved.read_text()).items()}
    for post in ("none", "rescore") if not heard else ():
        # the spotter runs after the cascade, on its text: applied below at each threshold
        lm = build_cascade(CascadeSpec(asr=args.asr, tts=None, vad=True, postprocess=post,
                                       options=CascadeConfig(phrase_match=1.0)))
        for with_context in (False, True):
            texts = []
            for it in track(items, description=f"{post}, context {with_context}"):
                context = Context(tuple(it.fields["context"])) if with_context else None
                texts.append(lm.respond(Request(audio=load(it.audio), want_audio=False,
                                                intent="transcribe", context=context)).text)
            heard[post, with_context] = texts
    saved.write_text(json.dumps({f"{p}|{c}": t for (p, c), t in heard.items()}))

    def score(texts: list[str], threshold: float | None, which: str) -> np.ndarray:
        spot = PhraseSpotter(threshold) if threshold else None
        out = []
        for it, text in zip(items, texts, strict=True):
            if part[it.audio] != which:
                continue
            if spot is not None:
                text = spot.apply(text, it.fields["context"])
            bias = {w for p in it.fields["bias"] for w in normalize(p).split()}
            out.append(split_errors(it.text or "", text, bias))
        return np.array(out)

    # the threshold: fewest rare-word errors on dev with the other words no worse than without
    # it (spotting alone on the plain transcripts)
    base = score(heard["none", False], None, "dev")
    best = None
    for threshold in (0.7, 0.75, 0.8, 0.85, 0.9):
        dev = score(heard["none", False], threshold, "dev")
        misses, other = dev[:, 1].sum() - dev[:, 0].sum(), dev[:, 2].sum()
        print(f"dev threshold {threshold}: rare-word errors {misses}, other-word errors "
              f"{other} (without context: {base[:, 1].sum() - base[:, 0].sum()}, "
              f"{base[:, 2].sum()})")
        if other <= base[:, 2].sum() and (best is None or misses < best[1]):
            best = (threshold, misses)
    chosen = best[0] if best else None
    print(f"chosen on dev: {chosen}")
    rng = np.random.default_rng(0)
    for which in ("test", "dev"):
        print(f"\n{args.manifest}: {which} ({sum(p == which for p in part.values())} clips), "
              f"{args.asr}\n")
        print("| post-processing | context | biasing-word recall [95% CI] | rare-word errors | "
              "other-word WER [95% CI] |")
        print("|---|---|---|---|---|")
        for post in ("none", "rescore"):
            for label, texts, threshold in (
                    ("none", heard[post, False], None),
                    ("100 phrases: hotwords + rescorer prompt", heard[post, True], None),
                    (f"100 phrases: phrase spotting at {chosen} only", heard[post, False],
                     chosen),
                    (f"100 phrases: all three (spotting at {chosen})", heard[post, True],
                     chosen)):
                per = score(texts, threshold, which)
                t = per.sum(0)
                picks = rng.integers(0, len(per), (2000, len(per)))
                recall = per[picks, 0].sum(1) / per[picks, 1].sum(1)
                other = per[picks, 2].sum(1) / per[picks, 3].sum(1)
                print(f"| {post} | {label} | {t[0] / t[1]:.3f} "
                      f"[{np.percentile(recall, 2.5):.3f}, {np.percentile(recall, 97.5):.3f}] "
                      f"| {t[1] - t[0]} of {t[1]} | {t[2] / t[3]:.4f} "
                      f"[{np.percentile(other, 2.5):.4f}, {np.percentile(other, 97.5):.4f}] |")


if __name__ == "__main__":
    main()
