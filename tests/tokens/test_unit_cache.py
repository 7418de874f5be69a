"""The shared units cache: `speechllm tokens fit` keeps the units of the clips it fitted on,
so training a decoder or a token LM on those units encodes nothing again (real Whisper
tiny.en on espeak-ng speech, through the CLI); a changed file is encoded afresh, and a
damaged cache is only encoded again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import speechllm.audio
from speechllm.audio import Audio, load, save
from speechllm.tokens.semantic import KMeansUnits
from speechllm.tokens.unit_cache import UnitCache, encode_files
from speechllm.tts.espeak import EspeakOptions, EspeakTTS

EXE = Path(sys.executable).parent / "speechllm"
TEXTS = ["turn on the light", "seven four two", "open the door", "call nine one",
         "set a timer", "eight", "close the window", "three five"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("unit_cache")
    voice = EspeakTTS(EspeakOptions("en-us", speed=160))
    rows = []
    for n, text in enumerate(TEXTS):
        save(Audio.concat(list(voice.stream(text))).resample(16000), root / f"{n}.wav")
        rows.append({"audio": f"{n}.wav", "text": text})
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = subprocess.run([str(EXE), "tokens", "fit", str(root / "m.jsonl"), "--kind", "units",
                           "--encoder", "whisper-tiny.en", "-k", "16", "-o", str(root / "units")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return root, KMeansUnits.load(root / "units")


def test_fitting_leaves_the_clips_units_for_the_next_steps(fitted, monkeypatch):
    root, units = fitted
    paths = [root / f"{n}.wav" for n in range(len(TEXTS))]
    fresh = units.encode_many([load(p) for p in paths])  # what encoding them again gives
    loads: list[object] = []
    real_load = speechllm.audio.load
    monkeypatch.setattr(speechllm.audio, "load", lambda *a, **k: loads.append(a) or
                        real_load(*a, **k))
    cached = encode_files(units, paths)
    assert not loads  # every clip came from the cache, no audio read
    assert all(np.array_equal(a, b) for a, b in zip(cached, fresh, strict=True))


def test_a_changed_file_is_encoded_afresh(fitted, tmp_path):
    root, units = fitted
    clip = tmp_path / "clip.wav"
    save(load(root / "0.wav"), clip)
    cache = UnitCache(units, tmp_path / "cache")
    first = encode_files(units, [clip], cache)[0]
    save(load(root / "1.wav"), clip)  # the same path now holds other speech
    second = encode_files(units, [clip], UnitCache(units, tmp_path / "cache"))[0]
    assert np.array_equal(second, units.encode(load(root / "1.wav"))[0])
    assert not np.array_equal(first, second)


def test_a_damaged_cache_is_encoded_again(fitted, tmp_path):
    root, units = fitted
    cache = UnitCache(units, tmp_path / "cache")
    cache.path.parent.mkdir(parents=True)
    cache.path.write_bytes(b"not an npz")
    got = encode_files(units, [root / "2.wav"], cache)[0]
    assert np.array_equal(got, units.encode(load(root / "2.wav"))[0])
    # and it is whole again: a new reader finds the clip
    assert UnitCache(units, tmp_path / "cache").get(next(iter(cache.clips()))) is not None


def test_audio_the_caller_has_loaded_is_not_read_again(fitted, tmp_path, monkeypatch):
    """`tokens train-u2s` loads every clip for its mel first: the clips the cache lacks are
    encoded from that audio, not read from disk a second time."""
    root, units = fitted
    clips = [tmp_path / "a.wav", tmp_path / "b.wav"]
    for n, clip in enumerate(clips):
        save(load(root / f"{n}.wav"), clip)
    audios = [load(c) for c in clips]
    loads: list[object] = []
    real_load = speechllm.audio.load
    monkeypatch.setattr(speechllm.audio, "load", lambda *a, **k: loads.append(a) or
                        real_load(*a, **k))
    got = encode_files(units, clips, UnitCache(units, tmp_path / "cache"),
                       audio=audios.__getitem__)
    assert not loads
    assert all(np.array_equal(g, units.encode(a)[0]) for g, a in zip(got, audios, strict=True))
