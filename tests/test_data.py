from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from speechllm.data import (
    Item,
    ManifestError,
    from_folder,
    from_table,
    read_manifest,
    write_manifest,
)

from .conftest import FSDD


def test_reads_the_shared_fsdd_manifest():
    items = read_manifest(FSDD / "manifest.jsonl")
    assert len(items) == 300
    assert items[0].audio.is_file() and items[0].text == "zero"
    assert items[0].fields["digit"] == 0 and "audio" not in items[0].fields


def _clip(path):
    sf.write(path, np.zeros(1600, np.float32), 16000)
    return path


@pytest.mark.parametrize("line, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"text": "hi"}', 'missing "audio"'),
    ('{"audio": "a.wav", "text": 5}', '"text" must be a string'),
    ('{"audio": "missing.wav"}', "missing.wav not found"),
])
def test_validation_names_the_bad_line(tmp_path, line, message):
    _clip(tmp_path / "a.wav")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio": "a.wav", "text": "fine"}\n\n' + line + "\n")
    with pytest.raises(ManifestError, match=f"m.jsonl:3: .*{message}"):
        read_manifest(manifest)


def test_write_then_read_keeps_relative_paths_and_fields(tmp_path):
    (tmp_path / "audio").mkdir()
    clip = _clip(tmp_path / "audio" / "x.wav")
    out = write_manifest([Item(clip, "hello", {"label": "greet"})], tmp_path / "sets" / "m.jsonl")
    row = json.loads(out.read_text())
    assert row == {"audio": "../audio/x.wav", "text": "hello", "label": "greet"}
    (back,) = read_manifest(out)
    assert back.audio == clip.resolve() and back.fields == {"label": "greet"}


def test_folder_with_sidecar_transcripts(tmp_path):
    (tmp_path / "spk1").mkdir()
    _clip(tmp_path / "spk1" / "a.flac")
    (tmp_path / "spk1" / "a.txt").write_text("turn it up\n")
    (items,) = [from_folder(tmp_path)]
    assert [(i.audio.name, i.text) for i in items] == [("a.flac", "turn it up")]
    _clip(tmp_path / "b.wav")
    with pytest.raises(ManifestError, match=r"no transcript b\.txt"):
        from_folder(tmp_path)


def test_csv_and_tsv_tables(tmp_path):
    _clip(tmp_path / "a.wav")
    (tmp_path / "t.csv").write_text("audio,text,intent\na.wav,lights on,lights\n")
    (item,) = from_table(tmp_path / "t.csv")
    assert item.text == "lights on" and item.fields == {"intent": "lights"}
    (tmp_path / "t.tsv").write_text("path\tsentence\na.wav\thello there\n")
    (item,) = from_table(tmp_path / "t.tsv", audio_column="path", text_column="sentence")
    assert item.text == "hello there"
    (tmp_path / "bad.csv").write_text("file,text\na.wav,x\n")
    with pytest.raises(ManifestError, match="no 'audio' column"):
        from_table(tmp_path / "bad.csv")
