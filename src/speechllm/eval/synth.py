"""Build a speech dataset from text with the local voices: every text x voice x rate
(x optional noise), written as WAV files plus a JSONL manifest.

Texts come from a plain file (one per line) or a JSONL file whose objects have "text" and any
task fields ("answer", "label", ...), which are copied to the manifest. These sets are for
training and development; real recordings stay for evaluation.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechllm.audio import save
from speechllm.eval.manifest import Item, ManifestError, write_manifest
from speechllm.eval.perturb import Speed, WhiteNoise, parse
from speechllm.tts.base import TTS, synthesize


@dataclass(frozen=True)
class SynthSpec:
    voices: tuple[str, ...] = ("piper", "espeak:en-us", "espeak:en-gb+f3")  # backend[:voice]
    rates: tuple[float, ...] = (1.0,)  # speed factors applied to the synthesised audio
    snrs: tuple[float | None, ...] = (None,)  # None: clean; a number: white noise at that SNR
    effects: tuple[str | None, ...] = (None,)  # None: none; else a perturbation ("telephone")
    sample_rate: int = 16000
    seed: int = 0


def read_texts(path: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    source = Path(path)
    if not source.is_file():
        raise ManifestError(f"{source}: no such file")
    rows: list[tuple[str, dict[str, Any]]] = []
    for n, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if source.suffix.lower() == ".jsonl":
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{source}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ManifestError(f"{source}:{n}: needs an object with a \"text\" string")
            text = obj.pop("text")
            rows.append((text, obj))
        else:
            rows.append((line.strip(), {}))
    if not rows:
        raise ManifestError(f"{source}: no texts")
    return rows


def _voice(name: str) -> TTS:
    from speechllm.cascade.build import make_tts

    backend, _, voice = name.partition(":")
    return make_tts(backend, voice or None)


def synthesize_dataset(texts: list[tuple[str, dict[str, Any]]], out_dir: str | os.PathLike[str],
                       spec: SynthSpec | None = None,
                       progress: Callable[[int, int], None] | None = None) -> Path:
    """Write `out_dir/audio/*.wav` and `out_dir/manifest.jsonl`; returns the manifest path.

    Files already written by an earlier, interrupted call are kept (names are content hashes).
    """
    s = spec or SynthSpec()
    root = Path(out_dir)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    voices = {name: _voice(name) for name in s.voices}
    effects = {e: parse(e) for e in s.effects if e is not None}  # bad specs fail before work
    jobs = [(t, f, v, r, snr, e) for t, f in texts for v in s.voices for r in s.rates
            for snr in s.snrs for e in s.effects]
    def run() -> Iterator[Item]:
        for i, (text, fields, voice, rate, snr, effect) in enumerate(jobs):
            key = json.dumps([text, voice, rate, snr, s.sample_rate, s.seed]
                             + ([effect] if effect else []))
            name = hashlib.sha1(key.encode()).hexdigest()[:16] + ".wav"
            path = root / "audio" / name
            if not path.is_file():
                audio = synthesize(voices[voice], text).resample(s.sample_rate)
                if rate != 1.0:
                    audio = Speed(rate).apply(audio)
                if effect is not None:
                    audio = effects[effect].apply(audio, seed=s.seed + i)
                if snr is not None:
                    audio = WhiteNoise(snr).apply(audio, seed=s.seed + i)
                tmp = path.with_suffix(".partial.wav")
                save(audio, tmp)
                tmp.replace(path)
            if progress:
                progress(i + 1, len(jobs))
            yield Item(path, text, {**fields, "voice": voice, "rate": rate,
                                    "snr": "clean" if snr is None else snr,
                                    **({"effect": effect} if effect else {})})

    return write_manifest(list(run()), root / "manifest.jsonl")
