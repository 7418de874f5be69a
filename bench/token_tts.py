"""Token TTS judged by Whisper: held-out digit/command phrases spoken by the token LM.

For each phrase of recipes/token_digits/speak_heldout.txt (never trained on; its words were):
- the Piper voice's own audio (the reference the LM learnt to imitate),
- Piper -> units -> unit-to-speech (the decoder alone: the best the LM's units could sound),
- text -> TokenSpeechLM units -> unit-to-speech (the token LM speaking),
each transcribed by Whisper base with its usual decoding (temperature 0, falling back to
sampling, seeded, when the text repeats itself: without it one short clip can come back as
"9, 9, 9, ..." and outweigh every other phrase); WER with numerals read as words and digit
strings digit by digit (Whisper writes a spoken "eight seven one" as "871"), with a 95%
bootstrap interval over phrases and a breakdown by kind of phrase. The sampling seed is reset
before every clip, so a clip's transcript depends on its audio alone and two runs can be
compared phrase by phrase. The LM speaks the phrases 8 at a time (`--batch-size`): the same
units as one at a time, several times faster. `--from-wavs` judges the audio a run wrote with
`--wavs` again without speaking anything (a few minutes instead of twenty). A run with `--wavs`
also keeps the LM's units there (units.jsonl); `--voice U2S --from-wavs DIR` decodes Piper's
audio and those same units with another unit-to-speech decoder, so decoders compare on
identical LM output;
`--phases N` decodes them again from N Griffin-Lim start phases (the judge hears each phase
differently: a few points of WER) and reports each and their mean. `--min-word-units N`
speaks with another floor on each word's length than the model's (0: none). `--piper-only`
with `--voice` judges Piper's audio through a decoder on other units (another rate or k) than
the LM wrote, without the LM's row. `--lm-only` judges the LM's audio alone (no Piper or
resynthesis row: about 4 of the judge's 8 min in the token recipe), with Piper's audio still
written to `--wavs` so that a later `--from-wavs --voice` run can add both rows.

    .venv/bin/python bench/token_tts.py runs/token_digits/final [--wavs runs/token_tts]
    .venv/bin/python bench/token_tts.py runs/token_digits/final \
        --phrases recipes/token_digits/speak_heldout.txt \
        --phrases recipes/token_digits/speak_heldout_more.txt   # both held-out sets
    .venv/bin/python bench/token_tts.py --from-wavs runs/token_tts --phrases ...  # judge again
    .venv/bin/python bench/token_tts.py --from-wavs runs/token_tts --voice runs/u2s_new \
        --phases 3 --phrases ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import ctranslate2
import numpy as np

from speechllm.asr.base import ASROptions
from speechllm.asr.faster_whisper import FasterWhisperASR
from speechllm.audio import Audio, load, save
from speechllm.eval.report import bootstrap
from speechllm.text_norm import word_errors
from speechllm.tokens.base import Codes
from speechllm.tokens.model import TokenSpeechLM
from speechllm.tokens.unit2speech import UnitToSpeech
from speechllm.tts.piper import PiperTTS

ROOT = Path(__file__).resolve().parents[1]
DIGITS = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}


def kind(text: str) -> str:
    words = text.split()
    if set(words) <= DIGITS:
        return "digit strings"
    return "call numbers" if words[0] == "call" else "commands"


def rate(counts: Sequence[tuple[int, int]]) -> dict[str, float]:
    return {"wer": 100 * sum(e for e, _ in counts) / max(1, sum(n for _, n in counts))}


NAMES = ("piper", "resynth", "token LM")


def wav_path(folder: Path, n: int, name: str) -> Path:
    return folder / f"{n:02d}-{name.replace(' ', '_')}.wav"


def saved_audio(folder: Path, count: int) -> list[dict[str, Audio]]:
    paths = [wav_path(folder, n, name) for n in range(count) for name in NAMES]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"{folder}: {len(missing)} clips missing (first {missing[0].name}); "
                         "was it written with --wavs and the same --phrases? (an --lm-only run "
                         "has no resynthesis: judge it with --voice)")
    return [{name: load(wav_path(folder, n, name)) for name in NAMES} for n in range(count)]


class Speaker:
    """The three audios of one phrase: Piper's, Piper's units through the decoder, the LM's."""

    def __init__(self, model: Path, min_word_units: int | None = None) -> None:
        self.lm = TokenSpeechLM.from_pretrained(model)
        if min_word_units is not None:
            self.lm.config = dataclasses.replace(self.lm.config, min_word_units=min_word_units)
        if self.lm.voice is None:
            raise SystemExit(f"{model}: no unit-to-speech decoder to speak with")
        self.piper = PiperTTS()
        self.lm_time = 0.0
        self.units: list[list[int]] = []

    def speak_all(self, texts: Sequence[str], batch_size: int) -> None:
        """The LM's units for every phrase, `batch_size` phrases at a time (the same units as
        one at a time; the speaking time reported is the batched one)."""
        began = time.perf_counter()
        self.units = [units or [0] for units in
                      self.lm.speak_units_batch(texts, batch_size=batch_size)]
        self.lm_time = time.perf_counter() - began

    def speak(self, n: int, text: str, references: bool = True) -> dict[str, Audio]:
        voice = self.lm.voice
        assert voice is not None
        original = Audio.concat(list(self.piper.stream(text))).resample(16000)
        if not references:  # Piper's audio is cheap and lets a later run add its rows
            return {"piper": original,
                    "token LM": voice.decode((np.asarray(self.units[n], np.int64),))}
        return three_clips(voice, original, self.units[n])


def three_clips(voice: UnitToSpeech, original: Audio, units: Sequence[int] | None,
                piper_units: Codes | None = None) -> dict[str, Audio]:
    """Piper's audio, its units through `voice`, and the LM's units (left out when None)."""
    resynth = voice.decode(piper_units if piper_units is not None else voice.encode(original))
    clips = {"piper": original, "resynth": resynth}
    if units is not None:
        clips["token LM"] = voice.decode((np.asarray(units, np.int64),))
    return clips


def redecoded(folder: Path, voice: UnitToSpeech, count: int,
              piper_units: dict[int, Codes], with_lm: bool = True) -> list[dict[str, Audio]]:
    """A --wavs run's Piper audio and LM units, decoded again by `voice`; Piper's units are
    encoded once into `piper_units` and reused by later calls (other start phases)."""
    path = folder / "units.jsonl"
    if with_lm and not path.is_file():
        raise SystemExit(f"{path} missing: --voice needs a run written with --wavs since units "
                         "were kept")
    # without the LM (a decoder on other units than it wrote): Piper's side only
    units = ([json.loads(line)["units"] for line in path.read_text().splitlines() if line]
             if with_lm else [None] * count)
    if len(units) != count:
        raise SystemExit(f"{path} has {len(units)} phrases, --phrases give {count}")
    clips = []
    for n in range(count):
        piper = load(wav_path(folder, n, "piper"))
        if n not in piper_units:
            piper_units[n] = voice.encode(piper)
        clips.append(three_clips(voice, piper, units[n], piper_units[n]))
    return clips


def heard(asr: FasterWhisperASR, opts: ASROptions, audio: Audio) -> str:
    """What Whisper hears, with its fallback's sampling seed reset: the same for every clip."""
    ctranslate2.set_random_seed(0)
    return asr.transcribe(audio, opts).text.strip()


def judged(asr: FasterWhisperASR, opts: ASROptions, texts: Sequence[str],
           clips: Sequence[Audio]) -> float:
    """WER % of `clips` against `texts`."""
    return rate([word_errors(text, heard(asr, opts, audio), digits=True)
                 for text, audio in zip(texts, clips, strict=True)])["wer"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path, nargs="?",
                        help="A saved token model (not needed with --from-wavs).")
    parser.add_argument("--phrases", type=Path, action="append",
                        help="A file of held-out phrases, one a line (repeatable; default "
                             "recipes/token_digits/speak_heldout.txt).")
    parser.add_argument("--wavs", type=Path, help="Also write each audio here.")
    parser.add_argument("--from-wavs", type=Path,
                        help="Judge the audio a run wrote with --wavs (same --phrases) again.")
    parser.add_argument("--voice", type=Path,
                        help="With --from-wavs: decode that run's Piper audio and LM units with "
                             "this unit-to-speech decoder instead of judging its audio.")
    parser.add_argument("--phases", type=int, default=1,
                        help="With --voice: also decode from this many Griffin-Lim start "
                             "phases (seeds 0..N-1) and report the WER of each and the mean.")
    parser.add_argument("--piper-only", action="store_true",
                        help="With --voice: judge only Piper's audio and its units through the "
                             "decoder (for a decoder on other units than the run's LM wrote).")
    parser.add_argument("--min-word-units", type=int,
                        help="Speak with this floor on each word's units instead of the "
                             "model's (0: none; the default is 120 ms: 3 units at 25/s).")
    parser.add_argument("--lm-only", action="store_true",
                        help="Judge the token LM's audio alone, without the Piper and "
                             "resynthesis reference rows (about half the judge's time).")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="Phrases the LM speaks at once (default 8; the units are the "
                             "same at any batch size, only the speaking time changes).")
    args = parser.parse_args()
    if (args.model is None) == (args.from_wavs is None):
        parser.error("give one of: a model to speak with, or --from-wavs DIR")
    if args.lm_only and (args.model is None or args.piper_only):
        parser.error("--lm-only needs a model to speak with (and not --piper-only)")
    files = args.phrases or [ROOT / "recipes/token_digits/speak_heldout.txt"]
    texts = [t for f in files for t in f.read_text().splitlines() if t.strip()]
    asr = FasterWhisperASR("whisper-base")
    opts = ASROptions(language="en")
    names = NAMES[:2] if args.piper_only else ("token LM",) if args.lm_only else NAMES
    rows: dict[str, list[str]] = {name: [] for name in names}
    seconds = dict.fromkeys(names, 0.0)
    shown = "resynth" if args.piper_only else "LM"
    if args.voice and not args.from_wavs:
        parser.error("--voice needs --from-wavs (a run whose LM units it decodes)")
    if args.piper_only and (not args.voice or args.phases > 1):
        parser.error("--piper-only needs --voice, at one start phase")
    if args.phases > 1 and not args.voice:
        parser.error("--phases needs --voice (the decoder to decode from other phases)")
    voice = UnitToSpeech.load(args.voice) if args.voice else None
    audios: list[dict[str, Audio]] | None
    if voice:
        voice.config = dataclasses.replace(voice.config, griffin_lim_seed=0)
        encoded: dict[int, Codes] = {}
        audios = redecoded(args.from_wavs, voice, len(texts), encoded, not args.piper_only)
    else:
        audios = saved_audio(args.from_wavs, len(texts)) if args.from_wavs else None
    speaker = Speaker(args.model, args.min_word_units) if args.model else None
    if speaker:
        speaker.speak_all(texts, args.batch_size)
    for n, text in enumerate(texts):
        clips = (speaker.speak(n, text, not args.lm_only) if speaker
                 else audios[n])  # type: ignore[index]
        for name, audio in clips.items():
            if name in rows:
                rows[name].append(heard(asr, opts, audio))
                seconds[name] += audio.duration
            if args.wavs:
                args.wavs.mkdir(parents=True, exist_ok=True)
                save(audio, wav_path(args.wavs, n, name))
        print(f"{text!r:45} {shown} -> {rows[names[-1]][-1]!r}", flush=True)
    if speaker and args.wavs:
        (args.wavs / "units.jsonl").write_text("".join(
            json.dumps({"text": t, "units": u}) + "\n" for t, u in zip(texts, speaker.units,
                                                                     strict=True)))
    print(f"\n{len(texts)} held-out phrases", end="")
    if speaker:
        print(f"; token LM speaking time {speaker.lm_time / max(1e-9, seconds['token LM']):.2f}"
              f" s per second of speech ({args.batch_size} phrases at a time)", end="")
    print("\n")
    counts = {name: [word_errors(t, h, digits=True) for t, h in zip(texts, heard, strict=True)]
              for name, heard in rows.items()}
    print("| audio | seconds | Whisper WER % | 95% interval |")
    print("|---|---|---|---|")
    for name, found in counts.items():
        low, high = bootstrap(found, rate, 1000).get("wer", (float("nan"),) * 2)
        print(f"| {name} | {seconds[name]:.1f} | {rate(found)['wer']:.1f} | "
              f"{low:.1f}-{high:.1f} |")
    kinds = sorted({kind(t) for t in texts})
    print(f"\n| kind of phrase | phrases | words | {' | '.join(counts)} |")
    print("|---|---|---|" + "---|" * len(counts))
    for k in kinds:
        picked = [n for n, t in enumerate(texts) if kind(t) == k]
        words = sum(counts[names[0]][n][1] for n in picked)
        cells = " | ".join(f"{rate([found[n] for n in picked])['wer']:.1f}"
                           for found in counts.values())
        print(f"| {k} | {len(picked)} | {words} | {cells} |")
    if voice and args.phases > 1:
        spread = {0: (rate(counts["resynth"])["wer"], rate(counts["token LM"])["wer"])}
        for seed in range(1, args.phases):
            voice.config = dataclasses.replace(voice.config, griffin_lim_seed=seed)
            again = redecoded(args.from_wavs, voice, len(texts), encoded)
            spread[seed] = (judged(asr, opts, texts, [c["resynth"] for c in again]),
                            judged(asr, opts, texts, [c["token LM"] for c in again]))
        print("\n| Griffin-Lim start phase | resynth WER % | token LM WER % |\n|---|---|---|")
        for seed, (resynth, lm) in spread.items():
            print(f"| {seed}{' (default)' if seed == 0 else ''} | {resynth:.1f} | {lm:.1f} |")
        print(f"| mean of {args.phases} | {np.mean([r for r, _ in spread.values()]):.1f} | "
              f"{np.mean([m for _, m in spread.values()]):.1f} |")


if __name__ == "__main__":
    main()
