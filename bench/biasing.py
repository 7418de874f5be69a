"""Contextual biasing (issue 44): sentences with rare names and terms, spoken by Piper and
espeak-ng en-us, each with a list of 100 candidate phrases of which one or two are said.

Two sets: bench/texts/biasing.jsonl (30 sentences, the development set: it chooses the
shortlist's size and floor and the phrase spotter's threshold) and
bench/texts/biasing_test.jsonl (20 other sentences with other names, held out: run once with
what dev chose). Scores: recall of the biasing words (each word of a said phrase heard exactly,
after normalisation) and the WER on the other words (errors aligned to the reference's other
words, plus insertions), through the cascade as `speechllm eval` runs it (task asr, intent
transcribe), without and with the context list, for each way the list reaches the recogniser:

- `all`: the 100 phrases as Whisper hotwords in one pass;
- `shortlist`: an unbiased pass, then a second pass with the few phrases that sound like part
  of it as hotwords, taking from it only the stretches that bring a phrase in;
- then, or alone, the phrase spotter (a listed phrase heard as a sound-alike is put back).

    .venv/bin/speechllm synth bench/texts/biasing.jsonl -o data/biasing --voices piper,espeak:en-us
    .venv/bin/speechllm synth bench/texts/biasing_test.jsonl -o data/biasing_test \\
        --voices piper,espeak:en-us
    .venv/bin/python bench/biasing.py data/biasing/manifest.jsonl \\
        --test data/biasing_test/manifest.jsonl

With `--distract MANIFEST` it also asks what a list costs where none of it is said: each item
of MANIFEST (real sentences, say) with and without 100 phrases drawn from the dev lists, the
default settings, WER paired, and the time each request took.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import jiwer
import numpy as np
from rich.progress import track

from speechllm.asr.base import ASR, ASROptions, Hypothesis, SegmentHypotheses, Transcript
from speechllm.audio import Audio, load
from speechllm.cascade.build import CascadeSpec, build_cascade
from speechllm.cascade.phrases import PhraseSpotter
from speechllm.cascade.pipeline import CascadeConfig
from speechllm.data import Item, read_manifest
from speechllm.speechlm import Context, Request, SpeechLM
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


@dataclass
class Remembering:
    """An ASR that decodes each (audio, options) once: the settings compared here share their
    first, unbiased pass, and differ only in what follows it."""

    asr: ASR
    seen: dict[tuple[str, ASROptions], Transcript] = field(default_factory=dict)

    def transcribe(self, audio: Audio, options: ASROptions | None = None) -> Transcript:
        key = (hashlib.sha1(audio.samples.tobytes()).hexdigest(), options or ASROptions())
        if key not in self.seen:
            self.seen[key] = self.asr.transcribe(audio, options)
        return self.seen[key]

    def nbest(self, audio: Audio, n: int, options: ASROptions | None = None) -> list[Hypothesis]:
        return self.asr.nbest(audio, n, options)

    def nbest_segments(self, audio: Audio, n: int, options: ASROptions | None = None
                       ) -> list[SegmentHypotheses]:
        return self.asr.nbest_segments(audio, n, options)

    def detect_language(self, audio: Audio) -> tuple[str, float]:
        return self.asr.detect_language(audio)


def heard(lm: SpeechLM, items: list[Item], with_context: bool, label: str) -> list[str]:
    texts = []
    for it in track(items, description=label, transient=True):
        context = Context(tuple(it.fields["context"])) if with_context else None
        texts.append(lm.respond(Request(audio=load(it.audio), want_audio=False,
                                        intent="transcribe", context=context)).text)
    return texts


def score(items: list[Item], texts: list[str], spot: float | None) -> np.ndarray:
    """Per item: (bias words heard, bias words, other-word errors, other words)."""
    out = []
    for it, text in zip(items, texts, strict=True):
        if spot is not None:
            text = PhraseSpotter(spot).apply(text, it.fields["context"])
        bias = {w for p in it.fields["bias"] for w in normalize(p).split()}
        out.append(split_errors(it.text or "", text, bias))
    return np.array(out)


def cascade(asr: Remembering, post: str, hotwords: str, size: int = 3,
            floor: float = 0.6) -> SpeechLM:
    """The eval's cascade with this biasing, sharing one remembering recogniser; the spotter
    is off here (applied to the saved text at each threshold)."""
    lm = build_cascade(CascadeSpec(asr="whisper-base", tts=None, vad=True, postprocess=post,
                                   options=CascadeConfig(phrase_match=1.0,
                                                         context_hotwords=hotwords,
                                                         shortlist_size=size,
                                                         shortlist_floor=floor)))
    lm.asr = asr  # type: ignore[attr-defined]
    return lm


def row(label: str, per: np.ndarray, rng: np.random.Generator) -> str:
    t = per.sum(0)
    picks = rng.integers(0, len(per), (2000, len(per)))
    recall = per[picks, 0].sum(1) / per[picks, 1].sum(1)
    other = per[picks, 2].sum(1) / per[picks, 3].sum(1)
    return (f"| {label} | {t[0] / t[1]:.3f} [{np.percentile(recall, 2.5):.3f}, "
            f"{np.percentile(recall, 97.5):.3f}] | {t[1] - t[0]} of {t[1]} | {t[2] / t[3]:.4f} "
            f"[{np.percentile(other, 2.5):.4f}, {np.percentile(other, 97.5):.4f}] |")


SIZES, FLOORS, SPOTS = (5, 8, 12), (0.4, 0.5, 0.6, 0.7), (None, 0.75, 0.8, 0.85, 0.9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dev", type=Path, help="the development manifest (chooses the settings)")
    ap.add_argument("--test", type=Path, help="the held-out manifest (judges them)")
    ap.add_argument("--defaults", action="store_true", help="skip dev: judge the shipped "
                    "defaults on --test")
    ap.add_argument("--distract", type=Path, help="a manifest whose items say none of the "
                    "listed phrases: what the list costs there")
    args = ap.parse_args()
    from speechllm.asr.base import ASR_BACKENDS

    asr = Remembering(ASR_BACKENDS.get("faster-whisper")("whisper-base"))
    dev = read_manifest(args.dev)
    if args.distract is not None:
        distract(ASR_BACKENDS.get("faster-whisper")("whisper-base"), dev, args.distract)
        return
    if args.defaults and args.test is not None:  # the held-out set with the shipped settings
        c = CascadeConfig()
        held_out(asr, args.test, c.context_hotwords, c.shortlist_size, c.shortlist_floor,
                 c.phrase_match if c.phrase_match < 1 else None, "the defaults")
        return

    # dev: every shortlist setting and spotter threshold; the choice has the fewest rare-word
    # errors among those whose other-word errors are no more than without the context
    plain = score(dev, heard(cascade(asr, "none", "off"), dev, False, "dev, no context"), None)
    allowed = plain[:, 2].sum()
    tried: list[tuple[int, int, str, tuple[str, int, float], float | None]] = []
    texts_all = heard(cascade(asr, "none", "all"), dev, True, "dev, all hotwords")
    texts_off = heard(cascade(asr, "none", "off"), dev, True, "dev, spotter only")
    for spot in SPOTS:
        for name, texts in (("all", texts_all), ("off", texts_off)):
            per = score(dev, texts, spot).sum(0)
            tried.append((per[1] - per[0], per[2], name, (name, 0, 0.0), spot))
    for size, floor in itertools.product(SIZES, FLOORS):
        texts = heard(cascade(asr, "none", "shortlist", size, floor), dev, True,
                      f"dev, shortlist {size} at {floor}")
        for spot in SPOTS:
            per = score(dev, texts, spot).sum(0)
            tried.append((per[1] - per[0], per[2], f"shortlist {size} at {floor}",
                          ("shortlist", size, floor), spot))
    print(f"dev ({len(dev)} clips): without context {plain[:, 1].sum() - plain[:, 0].sum()} "
          f"rare-word errors, {allowed} other-word errors")
    print("| hotwords | spotter | rare-word errors | other-word errors |\n|---|---|---:|---:|")
    for misses, other, name, _, spot in sorted(tried, key=lambda t: (t[0], t[1])):
        print(f"| {name} | {spot or 'off'} | {misses} | {other} |")
    ok = [t for t in tried if t[1] <= allowed]
    _, _, name, (mode, size, floor), spot = min(ok, key=lambda t: (t[0], t[1]))
    print(f"\nchosen on dev: {name}, spotter {spot or 'off'}")
    if args.test is not None:
        held_out(asr, args.test, mode, size, floor, spot, name)


def held_out(asr: Remembering, manifest: Path, mode: str, size: int, floor: float,
             spot: float | None, name: str) -> None:

    test = read_manifest(manifest)
    rng = np.random.default_rng(0)
    print(f"\n{manifest}: held out ({len(test)} clips), whisper-base\n")
    print("| post-processing | context | biasing-word recall [95% CI] | rare-word errors | "
          "other-word WER [95% CI] |\n|---|---|---|---|---|")
    for post in ("none", "rescore"):
        no = heard(cascade(asr, post, "off"), test, False, f"test {post}, no context")
        every = heard(cascade(asr, post, "all"), test, True, f"test {post}, all hotwords")
        chosen = heard(cascade(asr, post, mode, size, floor), test, True,
                       f"test {post}, {name}")
        for label, texts, s in (
                ("none", no, None),
                ("100 phrases: all as hotwords", every, None),
                (f"100 phrases: spotter at {spot} only", no, spot),
                (f"100 phrases: {name}", chosen, None),
                (f"100 phrases: {name}, spotter at {spot}", chosen, spot)):
            print(row(f"{post} | {label}", score(test, texts, s), rng))


def distract(asr: ASR, dev: list[Item], manifest: Path) -> None:
    """WER with and without a list of 100 phrases none of which is said, default settings."""
    import time

    pool = sorted({p for it in dev for p in it.fields["context"]})
    rng = np.random.default_rng(0)
    items = read_manifest(manifest)
    lm = build_cascade(CascadeSpec(asr="whisper-base", tts=None, vad=True, postprocess="none"))
    lm.asr = asr  # type: ignore[attr-defined]
    rows = []
    for it in track(items, description=f"{manifest.parent.name}, with and without a list"):
        audio = load(it.audio)
        listed = Context(tuple(rng.choice(pool, 100, replace=False)))
        took, texts = [], []
        for context in (None, listed):
            start = time.perf_counter()
            texts.append(lm.respond(Request(audio=audio, want_audio=False, intent="transcribe",
                                            context=context)).text)
            took.append(time.perf_counter() - start)
        if texts[0] != texts[1]:
            print(f"  {texts[0]}\n  {texts[1]}")
        ref = normalize(it.text or "")
        errors = [jiwer.process_words(ref, normalize(t) or "-") for t in texts]
        rows.append((errors[0].substitutions + errors[0].deletions + errors[0].insertions,
                     errors[1].substitutions + errors[1].deletions + errors[1].insertions,
                     len(ref.split()), *took, texts[0] != texts[1]))
    a = np.array(rows, dtype=float)
    picks = rng.integers(0, len(a), (2000, len(a)))
    diff = (a[picks, 1].sum(1) - a[picks, 0].sum(1)) / a[picks, 2].sum(1)
    print(f"\n{manifest}: {len(a)} clips, a list of 100 phrases none of which is said\n")
    print(f"| | WER | seconds a request (median) |\n|---|---:|---:|\n"
          f"| no list | {a[:, 0].sum() / a[:, 2].sum():.4f} | {np.median(a[:, 3]):.3f} |\n"
          f"| 100 phrases, default settings | {a[:, 1].sum() / a[:, 2].sum():.4f} | "
          f"{np.median(a[:, 4]):.3f} |\n")
    print(f"difference {(a[:, 1].sum() - a[:, 0].sum()) / a[:, 2].sum():+.4f} "
          f"[{np.percentile(diff, 2.5):+.4f}, {np.percentile(diff, 97.5):+.4f}]; "
          f"{int(a[:, 5].sum())} transcripts differ")


if __name__ == "__main__":
    main()
