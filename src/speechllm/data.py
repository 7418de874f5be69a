"""Datasets as JSONL manifests: one object per line, `audio` relative to the manifest file.

    {"audio": "clips/0001.wav", "text": "turn on the lights", "intent": "lights_on"}

Reading validates every line and names the first bad one (line number and what is wrong).
Importers turn a folder with sidecar .txt transcripts or a CSV/TSV file into a manifest.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechllm.errors import SpeechLLMError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus")


class ManifestError(SpeechLLMError, ValueError):
    """A manifest line that cannot be used; the message names the file and the line."""

    exit_code = 3


@dataclass(frozen=True)
class Item:
    audio: Path  # absolute path
    text: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # task fields: answer, label, ...
    line: int = 0  # 1-based line in the manifest it came from


def read_manifest(path: str | os.PathLike[str], check_files: bool = True) -> list[Item]:
    """All items of a JSONL manifest; raises ManifestError naming the first bad line."""
    source = Path(path)
    if not source.is_file():
        raise ManifestError(f"{source}: no such manifest")
    items: list[Item] = []
    with source.open(encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{source}:{n}"
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ManifestError(f"{where}: expected a JSON object, got {type(row).__name__}")
            audio = row.pop("audio", None)
            if not isinstance(audio, str) or not audio:
                raise ManifestError(f"{where}: missing \"audio\" (a path relative to the manifest)")
            text = row.pop("text", None)
            if text is not None and not isinstance(text, str):
                kind = type(text).__name__
                raise ManifestError(f"{where}: \"text\" must be a string, got {kind}")
            resolved = (source.parent / audio).resolve()
            if check_files and not resolved.is_file():
                raise ManifestError(f"{where}: audio file {audio} not found (looked at {resolved})")
            items.append(Item(resolved, text, row, n))
    if not items:
        raise ManifestError(f"{source}: the manifest has no items")
    return items


def write_manifest(items: Iterable[Item], path: str | os.PathLike[str]) -> Path:
    """Write items with audio paths relative to the manifest's folder."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    base = target.parent.resolve()
    with target.open("w", encoding="utf-8") as f:
        for it in items:
            row: dict[str, Any] = {"audio": os.path.relpath(it.audio, base)}
            if it.text is not None:
                row["text"] = it.text
            row.update(it.fields)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return target


def from_folder(folder: str | os.PathLike[str]) -> list[Item]:
    """Every audio file under `folder` (recursively) with a same-named .txt transcript beside it."""
    root = Path(folder)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder")
    items = []
    for audio in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
        transcript = audio.with_suffix(".txt")
        if not transcript.is_file():
            raise ManifestError(f"{audio}: no transcript {transcript.name} beside it")
        items.append(Item(audio.resolve(), transcript.read_text(encoding="utf-8").strip()))
    if not items:
        raise ManifestError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return items


def from_table(path: str | os.PathLike[str], audio_column: str = "audio",
               text_column: str = "text") -> list[Item]:
    """A CSV (comma) or TSV (tab, by .tsv extension) file with a header row; other columns
    become task fields. Audio paths are relative to the table's folder."""
    source = Path(path)
    if not source.is_file():
        raise ManifestError(f"{source}: no such file")
    delimiter = "\t" if source.suffix.lower() == ".tsv" else ","
    with source.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        header = reader.fieldnames or []
        if audio_column not in header:
            raise ManifestError(f"{source}: no {audio_column!r} column (columns: {header})")
        items = []
        for n, row in enumerate(reader, 2):
            audio = (row.pop(audio_column) or "").strip()
            if not audio:
                raise ManifestError(f"{source}:{n}: empty {audio_column!r}")
            text = row.pop(text_column, None)
            resolved = (source.parent / audio).resolve()
            if not resolved.is_file():
                raise ManifestError(f"{source}:{n}: audio file {audio} not found")
            items.append(Item(resolved, text, {k: v for k, v in row.items() if k}, n))
    return items


def from_hf_disk(path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                 split: str | None = None, audio_column: str = "audio",
                 text_column: str = "text") -> list[Item]:
    """A Hugging Face `datasets` directory written by `save_to_disk`, its audio written out as
    files under `out_dir/clips/` (encoded bytes are copied as they are; decoded arrays become
    WAV), other scalar columns kept as task fields. A DatasetDict needs `split` unless it has
    only one. Audio is never decoded by `datasets`, so no extra decoder package is needed."""
    from speechllm._optional import require

    datasets = require("datasets", "eval")
    source = Path(path)
    if not source.is_dir():
        raise ManifestError(f"{source}: not a folder saved with datasets' save_to_disk")
    try:
        loaded = datasets.load_from_disk(str(source))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise ManifestError(f"{source}: not a saved Hugging Face dataset ({exc})") from None
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        if split is None and len(names) == 1:
            split = names[0]
        if split not in loaded:
            raise ManifestError(f"{source}: choose a split with --split: {', '.join(names)}")
        loaded = loaded[split]
    columns = loaded.column_names
    if audio_column not in columns:
        raise ManifestError(f"{source}: no {audio_column!r} column (columns: {columns})")
    if isinstance(loaded.features[audio_column], datasets.Audio):
        loaded = loaded.cast_column(audio_column, datasets.Audio(decode=False))
    clips = Path(out_dir) / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    items = []
    for n, row in enumerate(loaded, 1):
        target = _write_hf_audio(row.pop(audio_column), clips, n, f"{source} row {n}")
        text = row.pop(text_column, None)
        fields = {k: v for k, v in row.items() if isinstance(v, str | int | float | bool)}
        items.append(Item(target.resolve(), None if text is None else str(text), fields, n))
    if not items:
        raise ManifestError(f"{source}: the dataset has no rows")
    return items


def _write_hf_audio(cell: Any, clips: Path, n: int, where: str) -> Path:
    """One audio cell -> a file: {"bytes", "path"} (undecoded) or {"array", "sampling_rate"}."""
    if isinstance(cell, dict) and cell.get("bytes"):
        suffix = Path(cell.get("path") or "x.wav").suffix or ".wav"
        target = clips / f"{n:06d}{suffix}"
        target.write_bytes(cell["bytes"])
        return target
    if isinstance(cell, dict) and cell.get("path") and Path(cell["path"]).is_file():
        return Path(cell["path"])
    if isinstance(cell, dict) and cell.get("array") is not None and cell.get("sampling_rate"):
        import numpy as np

        from speechllm.audio import Audio, save

        target = clips / f"{n:06d}.wav"
        save(Audio(np.asarray(cell["array"], np.float32), int(cell["sampling_rate"])), target)
        return target
    raise ManifestError(f"{where}: the audio cell has neither bytes, a file path that exists, "
                        "nor an array with its sampling_rate")
