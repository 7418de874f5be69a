"""Importing a Hugging Face dataset saved with save_to_disk, through the real `datasets`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest

from speechllm.audio import load
from speechllm.data import ManifestError, from_hf_disk, read_manifest

from ..conftest import FSDD, fsdd_items

EXE = Path(sys.executable).parent / "speechllm"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """FSDD recordings as a DatasetDict (train/test) with an Audio column, as HF users have."""
    root = tmp_path_factory.mktemp("hf")
    rows = fsdd_items(every=60)
    table = {"audio": [str(FSDD / r["audio"]) for r in rows], "text": [r["text"] for r in rows],
             "digit": [r["digit"] for r in rows]}
    ds = datasets.Dataset.from_dict(table).cast_column("audio", datasets.Audio())
    path = root / "fsdd"
    datasets.DatasetDict({"train": ds.select(range(2)), "test": ds}).save_to_disk(str(path))
    return path, rows


def test_saved_dataset_becomes_a_manifest_with_identical_audio(tmp_path, saved):
    path, rows = saved
    out = tmp_path / "imported" / "manifest.jsonl"
    done = subprocess.run([str(EXE), "import", str(path), "--split", "test", "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    items = read_manifest(out)
    assert [it.text for it in items] == [r["text"] for r in rows]
    assert [it.fields["digit"] for it in items] == [r["digit"] for r in rows]
    for it, r in zip(items, rows, strict=True):
        assert it.audio.is_relative_to(out.parent)  # copied: the dataset may move away
        ours, theirs = load(it.audio, None), load(FSDD / r["audio"], None)
        assert ours.sample_rate == theirs.sample_rate
        np.testing.assert_array_equal(ours.samples, theirs.samples)


def test_split_must_be_named_when_there_are_several(tmp_path, saved):
    path, _ = saved
    with pytest.raises(ManifestError, match="train, test"):
        from_hf_disk(path, tmp_path)
    with pytest.raises(ManifestError, match="no 'speech' column"):
        from_hf_disk(path, tmp_path, split="test", audio_column="speech")
    with pytest.raises(ManifestError, match="not a saved Hugging Face dataset"):
        from_hf_disk(tmp_path, tmp_path)


def test_decoded_arrays_are_written_as_wav(tmp_path):
    tone = np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440).astype(np.float32) * 0.5
    ds = datasets.Dataset.from_dict({"audio": [{"array": tone, "sampling_rate": 8000}],
                                     "text": ["a tone"]})
    ds.save_to_disk(str(tmp_path / "arr"))
    items = from_hf_disk(tmp_path / "arr", tmp_path / "out")
    got = load(items[0].audio, sample_rate=None)
    assert got.sample_rate == 8000 and items[0].text == "a tone"
    np.testing.assert_allclose(got.samples, tone, atol=1e-4)
