"""What a phone line costs the recogniser: WER of Whisper base (the cascade's settings) on
the same utterances as given, band-limited to 8 kHz, and through the telephony path exactly as
the server takes it (8 kHz, G.711 mu-law bytes, decoded by speechllm.serve.g711, resampled to
16 kHz by the session's soxr stream).

    ./dev python bench/phone_path.py

Sets: the 164 real sentences (16 kHz recordings), every second FSDD test digit (real speakers,
recorded at 8 kHz: only the codec's quantisation is new), and the clean synthetic requests of
the tool-call benchmark (data/tools, Piper and espeak-ng). Prints WER per condition and
paired differences with 95% bootstrap intervals (resampling utterances).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soxr

from speechllm.asr.faster_whisper import FasterWhisperASR
from speechllm.audio import Audio, load
from speechllm.cascade.pipeline import CascadeConfig
from speechllm.data import read_manifest
from speechllm.serve import g711
from speechllm.text_norm import word_errors

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def phone(audio: Audio, law: g711.Law = "mulaw") -> Audio:
    """16 kHz audio -> 8 kHz G.711 bytes -> back, as the server hears a call."""
    narrow = soxr.resample(audio.samples, audio.sample_rate, 8000)
    data = g711.encode(np.clip(np.round(narrow * 32768), -32768, 32767).astype(np.int16), law)
    back = g711.decode(data, law).astype(np.float32) / 32768.0
    stream = soxr.ResampleStream(8000, 16000, 1, dtype="float32")
    return Audio(stream.resample_chunk(back, last=True), 16000)


def narrowband(audio: Audio) -> Audio:
    return Audio(soxr.resample(soxr.resample(audio.samples, audio.sample_rate, 8000), 8000,
                               16000), 16000)


def interval(deltas: np.ndarray, words: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    picks = [rng.integers(0, len(words), len(words)) for _ in range(2000)]
    values = [deltas[p].sum() / words[p].sum() for p in picks]
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def main() -> None:
    asr = FasterWhisperASR("whisper-base")
    options = CascadeConfig().asr
    sets = {
        "real sentences (16 kHz)": read_manifest(SHARED / "real-sentences/manifest.jsonl"),
        "FSDD digits (8 kHz recordings)": read_manifest(SHARED / "fsdd-test/manifest.jsonl")[::2],
        "synthetic requests (clean)": [it for it in read_manifest(
            ROOT / "data/tools/manifest.jsonl") if it.fields.get("snr") == "clean"],
    }
    conditions = {"as given (16 kHz)": lambda a: a, "8 kHz band-limited": narrowband,
                  "phone path (8 kHz mu-law)": phone}
    print("| set | n | " + " | ".join(conditions) + " | phone minus band-limited | "
          "phone minus as given |")
    print("|---|---|" + "---|" * (len(conditions) + 2))
    for name, items in sets.items():
        errors: dict[str, list[int]] = {c: [] for c in conditions}
        words: list[int] = []
        for it in items:
            audio = load(it.audio, 16000)
            for c, change in conditions.items():
                wrong, n = word_errors(it.text or "",
                                       asr.transcribe(change(audio), options).text)
                errors[c].append(wrong)
            words.append(n)
        w = np.array(words, float)
        e = {c: np.array(v, float) for c, v in errors.items()}  # per utterance
        cells = [f"{v.sum() / w.sum():.4f}" for v in e.values()]
        d1 = e["phone path (8 kHz mu-law)"] - e["8 kHz band-limited"]
        d2 = e["phone path (8 kHz mu-law)"] - e["as given (16 kHz)"]
        lo1, hi1 = interval(d1, w)
        lo2, hi2 = interval(d2, w)
        print(f"| {name} | {len(items)} | " + " | ".join(cells) +
              f" | {d1.sum() / w.sum():+.4f} [{lo1:+.4f}, {hi1:+.4f}]"
              f" | {d2.sum() / w.sum():+.4f} [{lo2:+.4f}, {hi2:+.4f}] |", flush=True)


if __name__ == "__main__":
    main()
