"""How fast `speechllm synth` writes a dataset, against rendering every clip anew in one process.

The token and latent recipes' understanding set was, when this was measured, 9 voices
(Piper and eight espeak-ng variants; the recipes have since dropped en-gb+f4, and the bench
keeps the nine of its recorded figures) x 3 rates x clean/15 dB x clean/telephone: 12 clips
of each text and voice. The
baseline renders the voice for each of the 12 (what `synth` did until 2026-12-05); `synth`
now renders an espeak-ng voice once per text (it says a text the same way every time; Piper
draws new noise on every call, so it still renders each clip) and shares the clips out to
one process per core. Each way writes the same texts to a fresh folder, in turn, `--repeats`
times; the figures are the median wall times as ratios against the baseline's (same run).
The espeak-ng clips are checked to be the same bytes both ways.

    .venv/bin/python bench/synth_speed.py --texts 12
    .venv/bin/python bench/synth_speed.py --speaking --texts 300   # Piper alone
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from speechllm.audio import save  # noqa: E402
from speechllm.eval.perturb import Speed, WhiteNoise, parse  # noqa: E402
from speechllm.eval.synth import (  # noqa: E402
    SynthSpec,
    _voice,
    clip_name,
    default_workers,
    read_texts,
    synthesize_dataset,
)
from speechllm.tts.base import synthesize  # noqa: E402

VOICES = ("piper,espeak:en-us,espeak:en-gb,espeak:en-gb-scotland,espeak:en-029,"
          "espeak:en-us+f3,espeak:en-gb+f4,espeak:en-us-nyc+m3,espeak:en-gb-x-rp+f2")


def every_clip_anew(texts: list[tuple[str, dict]], out: Path, spec: SynthSpec) -> None:
    """The baseline: one process, the voice rendered for every clip (the clips' seeds and
    file names as `synthesize_dataset` gives them, so the files can be compared)."""
    voices = {v: _voice(v) for v in spec.voices}
    effects = {e: parse(e) for e in spec.effects if e is not None}
    (out / "audio").mkdir(parents=True)
    i = 0
    for text, _ in texts:
        for v in spec.voices:
            for rate in spec.rates:
                for snr in spec.snrs:
                    for effect in spec.effects:
                        audio = synthesize(voices[v], text).resample(spec.sample_rate)
                        if rate != 1.0:
                            audio = Speed(rate).apply(audio)
                        if effect is not None:
                            audio = effects[effect].apply(audio, seed=spec.seed + i)
                        if snr is not None:
                            audio = WhiteNoise(snr).apply(audio, seed=spec.seed + i)
                        save(audio, out / "audio" / clip_name(text, v, rate, snr, effect, spec))
                        i += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=12, help="the first N of the recipe's texts")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--speaking", action="store_true",
                    help="the token recipe's speaking texts instead: Piper, one clip each")
    args = ap.parse_args()
    if args.speaking:
        texts = read_texts(ROOT / "recipes" / "token_digits" / "speak_train.jsonl")[: args.texts]
        spec = SynthSpec(voices=("piper",))
    else:
        texts = read_texts(ROOT / "recipes" / "latent_digits" / "texts.jsonl")[: args.texts]
        spec = SynthSpec(voices=tuple(VOICES.split(",")), rates=(0.85, 1.0, 1.2),
                         snrs=(None, 15.0), effects=(None, "telephone"))
    cores = default_workers()
    ways = {"every clip anew, 1 process": None, "synth, 1 process": 1,
            f"synth, {cores} processes": cores}
    times: dict[str, list[float]] = {w: [] for w in ways}
    with tempfile.TemporaryDirectory() as tmp:
        written: dict[str, Path] = {}
        for r in range(args.repeats):
            for n, (way, workers) in enumerate(ways.items()):
                written[way] = out = Path(tmp) / f"{r}-{n}"
                began = time.perf_counter()
                if workers is None:
                    every_clip_anew(texts, out, spec)
                else:
                    synthesize_dataset(texts, out, spec, workers=workers)
                times[way].append(time.perf_counter() - began)
        base, last = written["every clip anew, 1 process"], written[list(ways)[-1]]
        rows = [json.loads(line) for line in (last / "manifest.jsonl").read_text().splitlines()]
        espeak = [r["audio"] for r in rows if r["voice"].startswith("espeak")]
        same = all((base / a).read_bytes() == (last / a).read_bytes() for a in espeak)
    per_text = len(spec.voices) * len(spec.rates) * len(spec.snrs) * len(spec.effects)
    clips = len(texts) * per_text
    print(f"{len(texts)} texts x {per_text} = {clips} clips, {args.repeats} repeats, "
          f"{cores} cores; espeak-ng clips identical both ways: "
          f"{same if espeak else 'none written'}\n")
    print("| way | s | clips/s | time vs every clip anew |\n|---|---|---|---|")
    baseline = statistics.median(times["every clip anew, 1 process"])
    for way in ways:
        t = statistics.median(times[way])
        print(f"| {way} | {t:.1f} | {clips / t:.0f} | {t / baseline:.2f} |")


if __name__ == "__main__":
    main()
