"""Unit-to-speech quality: Piper speech -> k-means units -> the trained decoder -> Griffin-Lim
-> Whisper base, on sentences the decoder never saw, beside the original audio.

Training data: recipes/unit_to_speech/texts.txt read by the Piper joe voice at three speaking
rates (the issue's "speech the project synthesises with the Piper voice").

    .venv/bin/python bench/unit_to_speech.py [--steps 1500] [--k 200]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from speechllm.asr.base import ASROptions
from speechllm.asr.faster_whisper import FasterWhisperASR
from speechllm.audio import Audio
from speechllm.text_norm import wer
from speechllm.tokens.semantic import KMeansUnits, UnitsConfig
from speechllm.tokens.unit2speech import U2SConfig, UnitToSpeech
from speechllm.tts.piper import PiperOptions, PiperTTS

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = [
    "My brother plays the piano every evening after dinner.",
    "Could you send me the report before noon on Monday?",
    "The train to the airport leaves from platform four.",
    "We planted tomatoes and beans in the garden last spring.",
    "Turn on the lights in the bedroom.",
    "Set a timer for five minutes.",
    "seven",
    "three",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--k", type=int, default=200)
    args = parser.parse_args()
    texts = [t for t in (ROOT / "recipes/unit_to_speech/texts.txt").read_text().splitlines()
             if t.strip()]
    began = time.perf_counter()
    audios = []
    for scale in (0.85, 1.0, 1.2):
        voice = PiperTTS(options=PiperOptions(length_scale=scale))
        audios += [Audio.concat(list(voice.stream(t))).resample(16000) for t in texts]
    units = KMeansUnits.fit(audios, UnitsConfig(k=args.k))
    u2s = UnitToSpeech.train(audios, units, U2SConfig.for_units(units, steps=args.steps))
    train_s = time.perf_counter() - began
    voice = PiperTTS()
    originals = [Audio.concat(list(voice.stream(t))).resample(16000) for t in HELD_OUT]
    rebuilt = [u2s.decode(u2s.encode(a)) for a in originals]
    asr = FasterWhisperASR("whisper-base")
    opts = ASROptions(language="en")
    heard_o = [asr.transcribe(a, opts).text for a in originals]
    heard_r = [asr.transcribe(a, opts).text for a in rebuilt]
    print(f"trained on {len(audios)} Piper clips ({sum(a.duration for a in audios):.0f} s), "
          f"k={args.k}, {args.steps} steps, {train_s / 60:.1f} min in all")
    print("| audio | Whisper WER % on held-out sentences |")
    print("|---|---|")
    print(f"| original Piper audio | {100 * wer(HELD_OUT, heard_o):.1f} |")
    print(f"| units -> unit-to-speech -> Griffin-Lim | {100 * wer(HELD_OUT, heard_r):.1f} |")
    for ref, hyp in zip(HELD_OUT, heard_r, strict=True):
        print(f"  {ref!r} -> {hyp!r}")


if __name__ == "__main__":
    main()
