"""Spoken requests with a pause in the middle, for measuring cut-ins ("What is the capital of
... France?"), plus the same requests said whole.

Each paused utterance is two pieces synthesised separately (so each is said as if complete,
the hard case for any end-of-turn detector) with 0.3-1.0 s of silence between them, by
several voices (espeak-ng en-us, en-gb, en-us+f3 and Piper joe). Files are 16 kHz mono
16-bit, trimmed so that the file ends where the speech ends, as the peer harness in
../shared/peers expects. A TSV lists file, kind (paused/whole), pause, voice and text.

    .venv/bin/python bench/pause_set.py -o /tmp/pauses        # 32 paused + 8 whole
Then stream them with ../shared/peers (speechllm_realtime.py, pipecat_cascade.py): a turn
whose transcript, text or audio arrives before the end of the speech answered a fragment.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from speechllm.audio import Audio, load, save

PAIRS = [
    ("What is the capital of", "France?"), ("Set a timer for", "ten minutes."),
    ("Can you tell me the name of", "the longest river?"),
    ("I would like to know the weather in", "Paris today."),
    ("How many days are there in", "a leap year?"), ("Remind me to call my", "sister at six."),
    ("What is the best way to", "cook rice?"), ("Play some music by", "the Beatles."),
    ("Who was the first person to", "walk on the moon?"),
    ("Turn off the lights in the", "kitchen please."),
    ("How far is it from London to", "Paris?"), ("Tell me a fun fact about", "octopuses."),
    ("What should I wear if it is", "raining tomorrow?"),
    ("Add eggs and milk to my", "shopping list."), ("How long does it take to", "boil an egg?"),
    ("What is the difference between", "a frog and a toad?"),
]
VOICES = ["espeak:en-us", "espeak:en-gb", "espeak:en-us+f3", "piper"]
RATE = 16000
FLOOR = 0.005  # the harness's speech threshold (fraction of full scale)


def speak(voice: str, text: str, piper: object) -> Audio:
    if voice == "piper":
        from speechllm.tts.base import synthesize
        return synthesize(piper, text).resample(RATE)  # type: ignore[arg-type]
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice.split(":", 1)[1], "-s", "160", "-w", f.name,
                        text], check=True)
        return load(f.name).resample(RATE)


def trimmed(audio: Audio) -> Audio:
    loud = np.nonzero(np.abs(audio.samples) > FLOOR)[0]
    return Audio(audio.samples[loud[0]: loud[-1] + 1], RATE)


def main() -> None:
    from speechllm.tts.piper import PiperOptions, PiperTTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--whole", type=int, default=8, help="requests also said whole")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    piper = PiperTTS(options=PiperOptions(noise_scale=0.0, noise_w_scale=0.0))
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, (first, rest) in enumerate(PAIRS * 2):  # each pair twice, by two voices
        voice = VOICES[n % len(VOICES)] if n < len(PAIRS) else VOICES[(n + 1) % len(VOICES)]
        pause = round(rng.uniform(0.3, 1.0), 2)
        audio = Audio.concat([trimmed(speak(voice, first, piper)), Audio.silence(pause, RATE),
                              trimmed(speak(voice, rest, piper))])
        name = f"paused{n:02d}.wav"
        save(audio, args.out / name)
        rows.append((name, "paused", pause, voice, f"{first} | {rest}"))
    for n, (first, rest) in enumerate(rng.sample(PAIRS, args.whole)):
        voice = VOICES[n % len(VOICES)]
        name = f"whole{n:02d}.wav"
        save(trimmed(speak(voice, f"{first} {rest}", piper)), args.out / name)
        rows.append((name, "whole", 0.0, voice, f"{first} {rest}"))
    (args.out / "set.tsv").write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    print(f"wrote {len(rows)} files to {args.out}")


if __name__ == "__main__":
    main()
