"""Can the units tell these words apart? A check on the unit inventory, not on a model.

Two measurements on a speaking set with word timings (`speechllm tokens align`):

1. Word spans: each clip containing one of `--words` is encoded with the unit tokenizer and
   cut at its word timings (25 units/s). Every span, its repeats collapsed, is labelled with
   the word of its nearest other span by edit distance (leave-one-out 1-NN), with the same
   number of spans drawn per word (`--per-word`, redrawn `--draws` times) so that a frequent
   word does not win by numbers. A word the units keep apart is labelled as itself; one they
   do not is labelled as the words it sounds like in units.
2. Phrase starts (`--voice U2S --starting WORD`): clips whose text starts with WORD, heard by
   Whisper base as Piper said it, resynthesised from its own units by the unit-to-speech
   decoder (the best a token LM's units could sound), and through Griffin-Lim from Piper's
   own mel frames (no units): which of the three keeps the first word. These are training
   clips, so the decoder has seen these very unit sequences.

    .venv/bin/python bench/word_units.py data/token_speak/manifest.aligned.jsonl \
        --units runs/token_digits/units --words and,in,call,close,heater,the
    .venv/bin/python bench/word_units.py data/token_speak/manifest.aligned.jsonl \
        --units runs/token_digits/units --voice runs/token_digits/voice --starting call

3. Other inventories (`--fit MANIFEST [--fit MANIFEST2] -k 500,1000 --stride 2,1`): units
   fitted here on the fit manifests' audio for every k and stride (2 = 25 units/s, the
   recipe's; 1 = 50/s), each judged as in 1 on the same spans: is there an inventory, short of
   a new encoder, that keeps "and" apart from "in"? Whisper runs once per clip (stride 1 states
   pooled for stride 2, as the tokenizer pools them); k-means as `speechllm tokens fit` does.
   `--pool mean,stack` also tries each unit's states side by side instead of averaged.

    .venv/bin/python bench/word_units.py data/token_speak/manifest.aligned.jsonl \
        --fit data/latent_digits/manifest.jsonl -k 500,1000 --stride 2,1
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

from unit_choice import edit  # noqa: E402

from speechllm.audio import load  # noqa: E402
from speechllm.data import Item, read_manifest  # noqa: E402
from speechllm.text_norm import normalize  # noqa: E402
from speechllm.tokens.base import dedup  # noqa: E402
from speechllm.tokens.load import load_tokenizer  # noqa: E402
from speechllm.tokens.semantic import (  # noqa: E402
    KMeansUnits,
    UnitFeatures,
    UnitsConfig,
    grouped_states,
    pool_states,
)
from speechllm.tokens.unit2speech import MEL, UnitToSpeech, griffin_lim, log_mel  # noqa: E402


def spans(items: list[Item], units: KMeansUnits, words: set[str]) -> dict[str, list[np.ndarray]]:
    """Each word's unit spans (repeats collapsed) in the clips that hold one of `words`."""
    rate = units.info.rates[0]
    chosen = [it for it in items if words & set(str(it.text).split()) and it.fields.get("words")]
    out: dict[str, list[np.ndarray]] = defaultdict(list)
    for start in range(0, len(chosen), 16):
        batch = chosen[start:start + 16]
        for it, u in zip(batch, units.encode_many([load(it.audio) for it in batch]), strict=True):
            for word, begin, end in it.fields["words"]:
                piece = u[round(begin * rate):round(end * rate)]
                if word in words and len(piece):
                    out[word].append(dedup(piece)[0])
        print(f"  encoded {min(start + 16, len(chosen))}/{len(chosen)} clips", file=sys.stderr,
              flush=True)
    return out


def stack_states(states: np.ndarray, stride: int) -> np.ndarray:
    """(T, D) states as (ceil(T / stride), stride * D): each unit sees its frames side by side
    instead of their mean, so a short sound inside a unit is not averaged away."""
    grouped = grouped_states(states, stride)
    return grouped.reshape(len(grouped), -1)


def inventories(items: list[Item], fit_items: list[Item], ks: list[int], strides: list[int],
                words: set[str], draws: int, pools: list[str]) -> None:
    """Check 3: units fitted on `fit_items` for each k and stride, judged on the word spans."""
    features = UnitFeatures(UnitsConfig(stride=1, window_seconds=4.0))

    def states(chosen: list[Item], what: str) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for start in range(0, len(chosen), 32):
            out += features([load(it.audio) for it in chosen[start:start + 32]])
            print(f"  {what}: {len(out)}/{len(chosen)} clips", file=sys.stderr, flush=True)
        return out

    timed = [it for it in items if words & set(str(it.text).split()) and it.fields.get("words")]
    missing = words - {w for it in timed for w, _, _ in it.fields["words"]}
    if missing:  # before Whisper runs on anything
        raise SystemExit(f"no timed spans of {sorted(missing)} in the manifest")
    fit_states, word_states = states(fit_items, "fit set"), states(timed, "word clips")
    names = sorted(words)
    print(f"Units fitted on {len(fit_items)} clips, judged on {len(timed)} timed clips; each "
          f"word's share of its spans labelled as itself ({draws} draws)\n")
    print("| k | units/s | pooling | " + " | ".join(names) + " | 'and' taken for 'in' |")
    print("|---|---|---|" + "---|" * len(names) + "---|")
    for stride, pool in [(st, p) for st in strides for p in pools if st > 1 or p == pools[0]]:
        pooled = pool_states if pool == "mean" else stack_states
        fit_pooled = [pooled(s, stride) for s in fit_states]
        for k in ks:
            units = KMeansUnits.fit_features(fit_pooled, UnitsConfig(k=k, stride=stride))
            rate = units.info.rates[0]
            by_word: dict[str, list[np.ndarray]] = defaultdict(list)
            for it, s in zip(timed, word_states, strict=True):
                u = units.assign(pooled(s, stride))
                for word, begin, end in it.fields["words"]:
                    piece = u[round(begin * rate):round(end * rate)]
                    if word in words and len(piece):
                        by_word[word].append(dedup(piece)[0])
            per_word = min(len(v) for v in by_word.values())
            table = confusions(by_word, per_word, draws, seed=0)
            share = {w: table[w][w] / sum(table[w].values()) for w in names}
            to_in = table["and"]["in"] / sum(table["and"].values()) if "and" in table else 0.0
            print(f"| {k} | {rate:g} | {pool} | " + " | ".join(f"{share[w]:.2f}" for w in names)
                  + f" | {to_in:.2f} |", flush=True)


def confusions(by_word: dict[str, list[np.ndarray]], per_word: int, draws: int,
               seed: int) -> dict[str, Counter[str]]:
    """How each word's spans are labelled by their nearest other span, over `draws` draws
    of `per_word` spans per word."""
    rng = random.Random(seed)
    out: dict[str, Counter[str]] = {w: Counter() for w in by_word}
    for _ in range(draws):
        pool = [(w, s) for w, all_s in by_word.items() for s in rng.sample(all_s, per_word)]
        for n, (word, span) in enumerate(pool):
            dists = [(edit(span, other), w) for m, (w, other) in enumerate(pool) if m != n]
            best = min(d for d, _ in dists)
            ties = [w for d, w in dists if d == best]
            out[word][rng.choice(ties)] += 1  # a tie is a coin toss, not a win
    return out


def first_word_heard(items: list[Item], voice: UnitToSpeech, word: str, clips: int) -> None:
    from token_tts import heard

    from speechllm.asr.base import ASROptions
    from speechllm.asr.faster_whisper import FasterWhisperASR

    asr, opts = FasterWhisperASR("whisper-base"), ASROptions(language="en")
    chosen = [it for it in items if str(it.text).split()[:1] == [word]][:clips]
    kept: Counter[str] = Counter()
    print("\n| clip | Piper | decoder on Piper's units | Griffin-Lim on Piper's mel |")
    print("|---|---|---|---|")
    for it in chosen:
        audio = load(it.audio)
        renders = {"Piper": audio, "decoder": voice.decode(voice.encode(audio)),
                   "Griffin-Lim": griffin_lim(log_mel(audio, MEL), MEL,
                                              voice.config.griffin_lim_iters,
                                              voice.config.griffin_lim_seed)}
        texts = {name: heard(asr, opts, a) for name, a in renders.items()}
        for name, text in texts.items():
            kept[name] += normalize(text, digits=True).split()[:1] == [word]
        print(f"| {it.text} | " + " | ".join(texts.values()) + " |", flush=True)
    print(f"\n'{word}' heard as the first word, of {len(chosen)} clips: "
          + ", ".join(f"{name} {n}" for name, n in kept.items()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest", type=Path, help="A speaking set with word timings.")
    ap.add_argument("--units", type=Path, help="The unit tokenizer folder.")
    ap.add_argument("--words", default="and,in,call,close,heater,the")
    ap.add_argument("--per-word", type=int, default=0,
                    help="Spans drawn per word (default: the rarest word's count).")
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--voice", type=Path, help="A unit-to-speech decoder: run check 2.")
    ap.add_argument("--starting", default="call")
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--fit", type=Path, action="append", default=[],
                    help="Fit units on this manifest's audio instead of --units (check 3).")
    ap.add_argument("-k", default="500", help="Unit counts to fit, comma-separated.")
    ap.add_argument("--stride", default="2", help="Strides to fit (2 = 25 units/s).")
    ap.add_argument("--pool", default="mean",
                    help="How a stride's states make one unit, comma-separated: mean (the "
                         "tokenizer's) or stack (side by side).")
    args = ap.parse_args()
    items = read_manifest(args.manifest)
    if args.fit:
        fit_items = [it for m in args.fit for it in read_manifest(m)]
        inventories(items, fit_items, [int(k) for k in args.k.split(",")],
                    [int(s) for s in args.stride.split(",")], set(args.words.split(",")),
                    args.draws, args.pool.split(","))
        return
    if args.voice:
        voice = UnitToSpeech.load(args.voice)
        first_word_heard(items, voice, args.starting, args.clips)
        return
    if args.units is None:
        raise SystemExit("--units is needed for the word spans")
    units = load_tokenizer(args.units)
    if not isinstance(units, KMeansUnits):
        raise SystemExit(f"{args.units} is not a k-means unit tokenizer")
    words = set(args.words.split(","))
    by_word = spans(items, units, words)
    missing = words - set(by_word)
    if missing:
        raise SystemExit(f"no timed spans of {sorted(missing)} in {args.manifest}")
    per_word = args.per_word or min(len(s) for s in by_word.values())
    table = confusions(by_word, per_word, args.draws, seed=0)
    names = sorted(by_word)
    print(f"{args.manifest}: {per_word} spans per word, {args.draws} draws; row = the word "
          "said, column = the word of its nearest other span (share of its spans)\n")
    print("| word (spans in all) | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for w in names:
        total = sum(table[w].values())
        print(f"| {w} ({len(by_word[w])}) | "
              + " | ".join(f"{table[w][o] / total:.2f}" for o in names) + " |")


if __name__ == "__main__":
    main()
