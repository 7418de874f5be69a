from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from speechllm.asr.base import ASROptions
from speechllm.audio import load
from speechllm.data import ManifestError, read_manifest
from speechllm.errors import ModelError
from speechllm.eval.synth import SynthSpec, read_texts, synthesize_dataset


def test_builds_a_manifest_over_voices_rates_and_noise(tmp_path, asr):
    texts = tmp_path / "qa.jsonl"
    texts.write_text(json.dumps({"text": "What is two plus three?", "answer": "five"}) + "\n" +
                     json.dumps({"text": "Name the largest ocean.", "answer": "Pacific"}) + "\n")
    spec = SynthSpec(voices=("piper", "espeak:en-us"), rates=(1.0, 1.2), snrs=(None, 10.0))
    manifest = synthesize_dataset(read_texts(texts), tmp_path / "set", spec)
    items = read_manifest(manifest)
    assert len(items) == 2 * 2 * 2 * 2
    assert {i.fields["answer"] for i in items} == {"five", "Pacific"}
    assert {(i.fields["voice"], i.fields["rate"], i.fields["snr"]) for i in items} == {
        (v, r, s) for v in ("piper", "espeak:en-us") for r in (1.0, 1.2) for s in ("clean", 10.0)}
    by = {(i.text, i.fields["voice"], i.fields["rate"], i.fields["snr"]): i for i in items}
    normal = load(by[("Name the largest ocean.", "piper", 1.0, "clean")].audio)
    fast = load(by[("Name the largest ocean.", "piper", 1.2, "clean")].audio)
    assert fast.duration < normal.duration * 0.9
    heard = asr.transcribe(normal, ASROptions(language="en")).text.lower()
    assert "largest ocean" in heard
    # a second run reuses what is there and writes the same manifest
    before = manifest.read_text()
    assert synthesize_dataset(read_texts(texts), tmp_path / "set", spec).read_text() == before


def test_bad_text_files(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"answer": "no text"}\n')
    with pytest.raises(ManifestError, match=r"t\.jsonl:1: needs an object with a \"text\""):
        read_texts(tmp_path / "t.jsonl")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ManifestError, match="no texts"):
        read_texts(tmp_path / "empty.txt")


def test_cli_synth(tmp_path):
    (tmp_path / "lines.txt").write_text("Open the door.\nClose the window.\n")
    exe = Path(sys.executable).parent / "speechllm"
    p = subprocess.run([str(exe), "synth", str(tmp_path / "lines.txt"), "-o",
                        str(tmp_path / "out"), "--voices", "espeak:en-us,espeak:en-gb",
                        "--snr", "clean,5"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "wrote 8 utterances" in p.stdout
    assert len(read_manifest(tmp_path / "out" / "manifest.jsonl")) == 8
    p = subprocess.run([str(exe), "synth", str(tmp_path / "nope.txt"), "-o", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3 and "no such file" in p.stderr


def test_workers_write_the_same_set_and_a_failure_keeps_finished_clips(tmp_path):
    texts = [("Open the door.", {}), ("Turn on the heater.", {})]
    spec = SynthSpec(voices=("espeak:en-us", "espeak:en-gb"), rates=(0.9, 1.1),
                     snrs=(None, 10.0), effects=(None, "telephone"))
    one = synthesize_dataset(texts, tmp_path / "one", spec, workers=1)
    two = synthesize_dataset(texts, tmp_path / "two", spec, workers=2)
    assert one.read_text() == two.read_text()
    # espeak-ng says a text the same way each time: every clip, noise and effects included,
    # is the same file whichever process rendered it
    for item in read_manifest(one):
        assert item.audio.read_bytes() == (tmp_path / "two" / "audio" / item.audio.name
                                           ).read_bytes()
    clips = {i.audio.name for i in read_manifest(one)}
    assert len(clips) == 2 * 2 * 2 * 2 * 2



def test_an_unknown_voice_is_refused_before_any_clip(tmp_path):
    # espeak-ng itself would speak "no-such-voice" as Norwegian
    spec = SynthSpec(voices=("espeak:en-us", "espeak:no-such-voice"))
    for workers in (1, 2):
        with pytest.raises(ModelError, match="no voice 'no-such-voice'"):
            synthesize_dataset([("Open the door.", {}), ("Close it.", {})], tmp_path / "set",
                               spec, workers=workers)
    assert not list((tmp_path / "set" / "audio").glob("*.wav"))
    with pytest.raises(ModelError, match="no voice 'en-us\\+zzz'"):
        synthesize_dataset([("Open the door.", {})], tmp_path / "set",
                           SynthSpec(voices=("espeak:en-us+zzz",)))


def test_a_failure_half_way_keeps_the_finished_clips(tmp_path, monkeypatch):
    import speechllm.eval.synth as synth

    texts = [("Open the door.", {}), ("Turn on the heater.", {})]
    spec = SynthSpec(voices=("espeak:en-us",), rates=(1.0, 1.2))
    rendered = []

    def fails_on_the_heater(tts, text):
        if "heater" in text:
            raise ModelError("espeak-ng failed")
        rendered.append(text)
        return real(tts, text)

    real = synth.synthesize
    monkeypatch.setattr(synth, "synthesize", fails_on_the_heater)
    with pytest.raises(ModelError):
        synthesize_dataset(texts, tmp_path / "set", spec, workers=1)
    kept = sorted((tmp_path / "set" / "audio").glob("*.wav"))
    assert len(kept) == 2 and rendered == ["Open the door."]  # one render for both rates
    monkeypatch.setattr(synth, "synthesize", real)
    manifest = synthesize_dataset(texts, tmp_path / "set", spec, workers=1)
    assert {i.audio for i in read_manifest(manifest)} >= set(kept)
    assert len(list((tmp_path / "set" / "audio").glob("*.wav"))) == 4
    assert not list((tmp_path / "set" / "audio").glob("*.partial.wav"))
