"""Build a speech dataset from text with the local voices: every text x voice x rate
(x optional noise), written as WAV files plus a JSONL manifest.

Texts come from a plain file (one per line) or a JSONL file whose objects have "text" and any
task fields ("answer", "label", ...), which are copied to the manifest. These sets are for
training and development; real recordings stay for evaluation.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechllm.audio import save
from speechllm.data import Item, ManifestError, write_manifest
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


def _voice(name: str, threads: int = 0) -> TTS:
    """A `backend[:voice]` name's TTS; `threads` caps a Piper voice's (0: its default)."""
    from speechllm.tts.base import make_tts

    backend, _, voice = name.partition(":")
    if backend == "piper" and threads:
        from speechllm.tts.piper import PiperOptions, PiperTTS

        return PiperTTS(voice or "piper-joe", PiperOptions(threads=threads))
    return make_tts(backend, voice or None)


def clip_name(text: str, voice: str, rate: float, snr: float | None, effect: str | None,
              spec: SynthSpec) -> str:
    """A clip's file name: a hash of what it is, so a rerun finds the clips it has."""
    key = json.dumps([text, voice, rate, snr, spec.sample_rate, spec.seed]
                     + ([effect] if effect else []))
    return hashlib.sha1(key.encode()).hexdigest()[:16] + ".wav"


@dataclass(frozen=True)
class _Job:
    index: int  # place in the manifest; also seeds this clip's noise and effect
    voice: str
    rate: float
    snr: float | None
    effect: str | None
    path: Path


class _Renderer:
    """Writes the clips of one text and voice. A voice that says a text the same way every
    time (espeak-ng) is rendered once for all its rates, noises and effects; one that draws
    new noise on every call (Piper) is rendered once per clip, so each clip is a new take."""

    def __init__(self, voices: tuple[str, ...], effects: tuple[str, ...], sample_rate: int,
                 seed: int, threads: int = 0) -> None:
        self.voices = {name: _voice(name, threads) for name in voices}
        self.effects = {e: parse(e) for e in effects}
        self.sample_rate, self.seed = sample_rate, seed

    def render(self, text: str, jobs: list[_Job]) -> int:
        once = None
        for job in jobs:
            tts = self.voices[job.voice]
            if once is None or not getattr(tts, "deterministic", False):
                once = synthesize(tts, text).resample(self.sample_rate)
            audio = once
            if job.rate != 1.0:
                audio = Speed(job.rate).apply(audio)
            if job.effect is not None:
                audio = self.effects[job.effect].apply(audio, seed=self.seed + job.index)
            if job.snr is not None:
                audio = WhiteNoise(job.snr).apply(audio, seed=self.seed + job.index)
            tmp = job.path.with_suffix(".partial.wav")
            save(audio, tmp)
            tmp.replace(job.path)
        return len(jobs)


_worker: _Renderer | None = None  # each worker process's voices, loaded once


def _start_worker(voices: tuple[str, ...], effects: tuple[str, ...], sample_rate: int,
                  seed: int) -> None:
    global _worker
    # one thread each: processes side by side, not threads fighting over the same cores
    _worker = _Renderer(voices, effects, sample_rate, seed, threads=1)


def _render_in_worker(text: str, jobs: list[_Job]) -> int:
    assert _worker is not None, "_start_worker runs first"
    return _worker.render(text, jobs)


def default_workers() -> int:
    """One process per CPU core, each on one thread (bench/synth_speed.py)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def synthesize_dataset(texts: list[tuple[str, dict[str, Any]]], out_dir: str | os.PathLike[str],
                       spec: SynthSpec | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       workers: int | None = None) -> Path:
    """Write `out_dir/audio/*.wav` and `out_dir/manifest.jsonl`; returns the manifest path.

    Files already written by an earlier, interrupted call are kept (names are content hashes),
    and so are those finished before an error. `workers` processes render the clips (default:
    one per core; 1 renders here, in this process). The clips do not depend on the number.
    """
    s = spec or SynthSpec()
    root = Path(out_dir)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    effect_specs = tuple(e for e in s.effects if e is not None)
    for e in effect_specs:
        parse(e)  # bad specs fail before any work
    items: list[Item] = []
    todo: dict[tuple[str, str], list[_Job]] = {}  # (text, voice) -> its missing clips
    index = 0
    for text, fields in texts:
        for voice in s.voices:
            for rate in s.rates:
                for snr in s.snrs:
                    for effect in s.effects:
                        path = root / "audio" / clip_name(text, voice, rate, snr, effect, s)
                        if not path.is_file():
                            todo.setdefault((text, voice), []).append(
                                _Job(index, voice, rate, snr, effect, path))
                        items.append(Item(path, text, {
                            **fields, "voice": voice, "rate": rate,
                            "snr": "clean" if snr is None else snr,
                            **({"effect": effect} if effect else {})}))
                        index += 1
    total, done = len(items), len(items) - sum(len(j) for j in todo.values())
    if progress:
        progress(done, total)
    voices = tuple(sorted({v for _, v in todo}))
    count = min(workers or default_workers(), len(todo))
    # loaded here whatever the workers: a bad voice fails with its own error, before any clip
    # (a worker that fails to start only breaks the pool)
    renderer = _Renderer(voices, effect_specs, s.sample_rate, s.seed) if todo else None
    if renderer is not None and count == 1:
        for (text, _), jobs in todo.items():
            done += renderer.render(text, jobs)
            if progress:
                progress(done, total)
    elif count > 1:
        # spawned, not forked: the caller may hold threads (a progress bar, a server)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(count, context, _start_worker,
                                 (voices, effect_specs, s.sample_rate, s.seed)) as pool:
            futures = [pool.submit(_render_in_worker, text, jobs)
                       for (text, _), jobs in todo.items()]
            try:
                for future in as_completed(futures):
                    done += future.result()
                    if progress:
                        progress(done, total)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return write_manifest(items, root / "manifest.jsonl")
