"""Audio tokenizers: reconstruction quality of the mel RVQ at several bitrates, and tokenizing
throughput of both tokenizers (k-means units, mel RVQ).

Fitting data: speech synthesised here (Piper joe + two espeak-ng voices reading digits,
commands and sentences, and the 50 texts of recipes/unit_to_speech/texts.txt); with
`--varied`, also four more espeak-ng voices and a telephone-band copy of everything.
Evaluation, never fitted on: (a) held-out synthetic sentences (other texts, the three test
voices), long enough for STOI and PESQ to be meaningful; (b) real FSDD recordings (every 5th,
60 clips: isolated digits, 8 kHz, 0.3-1 s). Quality: STOI and wide-band PESQ
against the original, and Whisper base round trip (WER of the reconstruction against the
reference text, beside the original audio's own WER).

    .venv/bin/python bench/audio_tokens.py [--stages 1 2 4 8] [--every 5] [--varied]
        [--vocoder-steps 3000] [--k 256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FSDD, fsdd_items, test_voices

from speechllm.asr.base import ASROptions
from speechllm.asr.faster_whisper import FasterWhisperASR
from speechllm.audio import Audio, load
from speechllm.eval.perturb import Telephone
from speechllm.text_norm import wer
from speechllm.tokens.acoustic import MelRVQ, RVQConfig
from speechllm.tokens.mel import griffin_lim, log_mel
from speechllm.tokens.semantic import KMeansUnits, UnitsConfig
from speechllm.tokens.vocoder import MelVocoder, VocoderConfig
from speechllm.tts.espeak import EspeakOptions, EspeakTTS

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEXTS = [
    *DIGITS,
    "Turn on the lights.", "Turn off the music.", "Set a timer for five minutes.",
    "What is the weather like today?", "Call my mother.", "Open the front door.",
    "The quick brown fox jumps over the lazy dog.", "Please bring the red box to the kitchen.",
    "The meeting has been moved to Thursday afternoon.", "I would like a cup of tea.",
    "Seven eight nine, one two three.", "She sells sea shells by the sea shore.",
]


HELD_OUT = [
    "My brother plays the piano every evening after dinner.",
    "Could you send me the report before noon on Monday?",
    "The train to the airport leaves from platform four.",
    "We planted tomatoes and beans in the garden last spring.",
    "Please leave the parcel with the neighbours next door.",
    "The bakery on the corner sells fresh bread every morning.",
    "Nobody expected the storm to arrive so early this year.",
    "Ask the driver which stop is closest to the hospital.",
]


def speak(texts: list[str], voices: list | None = None) -> tuple[list[Audio], list[str]]:
    audios, refs = [], []
    for voice in voices or test_voices():
        for text in texts:
            audios.append(Audio.concat(list(voice.stream(text))).resample(16000))
            refs.append(text)
    return audios, refs


def quality(original: Audio, rebuilt: Audio) -> tuple[float, float]:
    from pesq import PesqError, pesq
    from pystoi import stoi

    n = min(len(original), len(rebuilt))
    a, b = original.samples[:n], rebuilt.samples[:n]
    if n < 8000:  # PESQ needs 0.25 s at least; pad short clips with silence to 0.5 s
        a, b = np.pad(a, (0, 8000 - n)), np.pad(b, (0, 8000 - n))
    score = pesq(16000, a, b, "wb", on_error=PesqError.RETURN_VALUES)
    intelligibility = stoi(a, b, 16000, extended=False)
    # both return a placeholder when a clip has too little speech to score: left out
    return (float(intelligibility) if intelligibility > 1e-4 else np.nan,
            float(score) if score > 0 else np.nan)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--k", type=int, default=RVQConfig().k, help="Codes per codebook.")
    parser.add_argument("--varied", action="store_true", help="Fit on more voices and a "
                        "telephone-band copy too.")
    parser.add_argument("--vocoder-steps", type=int, default=0, help="Also train the neural "
                        "vocoder on the Piper clips of the fitting set and decode with it.")
    args = parser.parse_args()
    more = [t for t in (Path(__file__).resolve().parents[1] / "recipes" / "unit_to_speech" /
                        "texts.txt").read_text().splitlines() if t.strip()]
    fit_texts = [*TEXTS, *(t for t in more if t not in TEXTS and t not in HELD_OUT)]
    train, _ = speak(fit_texts)
    piper_clips = train[: len(fit_texts)]  # test_voices() starts with the Piper voice
    if args.varied:
        extra = [EspeakTTS(EspeakOptions(v, speed=s)) for v, s in (
            ("en-gb-scotland", 150), ("en-029", 160), ("en-us+m3", 175), ("en-gb-x-rp+f2", 145))]
        train += speak(fit_texts, extra)[0]
        train += [Telephone().apply(a) for a in train]
    rows = fsdd_items(args.every)
    sets = {"held-out synthetic": speak(HELD_OUT),
            "FSDD": ([load(FSDD / r["audio"]) for r in rows], [r["text"] for r in rows])}
    asr = FasterWhisperASR("whisper-base")
    opts = ASROptions(language="en", beam_size=1)
    most = max(args.stages)
    full = MelRVQ.fit(train, RVQConfig(stages=most, k=args.k))
    print(f"fit on {len(train)} synthetic clips ({sum(a.duration for a in train):.0f} s)")
    vocoder = None
    if args.vocoder_steps:
        began = time.perf_counter()
        vocoder = MelVocoder.train(piper_clips, VocoderConfig(mel=full.config.mel,
                                                               steps=args.vocoder_steps))
        print(f"vocoder: {args.vocoder_steps} steps on {len(piper_clips)} Piper clips "
              f"({sum(a.duration for a in piper_clips):.0f} s) in "
              f"{(time.perf_counter() - began) / 60:.1f} min")
    for name, (clips, refs) in sets.items():
        def round_trip(audios: list[Audio], refs: list[str] = refs) -> float:
            return 100 * wer(refs, [asr.transcribe(a, opts).text for a in audios])

        original_wer = round_trip(clips)
        print(f"\n{name}: {len(clips)} clips, {sum(c.duration for c in clips):.0f} s\n")
        print("| tokens | bitrate bps | STOI | PESQ (wb) | Whisper WER % | WER - original |")
        print("|---|---|---|---|---|---|")
        print(f"| original audio | 256000 | 1.000 | 4.64 | {original_wer:.1f} | 0.0 |")
        decoders: list[tuple[str, float, list[Audio]]] = []
        for stages in args.stages:
            rvq = MelRVQ(RVQConfig(stages=stages, k=args.k), full.codebooks[:stages])
            decoders.append((f"mel RVQ {stages}x{args.k} + Griffin-Lim", rvq.info.bitrate,
                             [rvq.decode(rvq.encode(c)) for c in clips]))
        decoders.append(("unquantised mel + Griffin-Lim", float("nan"),
                         [griffin_lim(log_mel(c, full.config.mel), full.config.mel)
                          for c in clips]))
        if vocoder is not None:
            rvq = MelRVQ(RVQConfig(stages=most, k=args.k), full.codebooks, vocoder)
            decoders.append((f"mel RVQ {most}x{args.k} + neural vocoder", rvq.info.bitrate,
                             [rvq.decode(rvq.encode(c)) for c in clips]))
            decoders.append(("unquantised mel + neural vocoder", float("nan"),
                             [vocoder(log_mel(c, full.config.mel)) for c in clips]))
        for label, bitrate, rebuilt in decoders:
            scores = np.array([quality(c, r) for c, r in zip(clips, rebuilt, strict=True)])
            w = round_trip(rebuilt)
            print(f"| {label} | {bitrate:.0f} | {np.nanmean(scores[:, 0]):.3f} | "
                  f"{np.nanmean(scores[:, 1]):.2f} | {w:.1f} | {w - original_wer:+.1f} |",
                  flush=True)

    clips = sets["FSDD"][0] + sets["held-out synthetic"][0]
    units = KMeansUnits.fit(train[:200], UnitsConfig(k=200))  # throughput only
    rvq4 = MelRVQ(RVQConfig(stages=4, k=args.k), full.codebooks[:4])
    units.encode_many(clips[:2])  # warm-up
    seconds = sum(c.duration for c in clips)
    start = time.perf_counter()
    units.encode_many(clips)
    u_rate = seconds / (time.perf_counter() - start)
    start = time.perf_counter()
    for c in clips:
        rvq4.encode(c)
    r_rate = seconds / (time.perf_counter() - start)
    print(f"\nthroughput (audio seconds per wall second, {seconds:.0f} s of audio): k-means "
          f"units (Whisper base encoder, k=200) {u_rate:.1f}; mel RVQ 4x{args.k} {r_rate:.1f}")


if __name__ == "__main__":
    main()
