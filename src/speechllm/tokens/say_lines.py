"""`speechllm tokens say --lines`: each phrase of a text file said into its own file, written
batch by batch with an index (`manifest.jsonl`), so an interrupted run keeps what it finished
and a rerun says only the rest."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechllm.audio import save
from speechllm.errors import ModelError


@dataclass(frozen=True)
class Said:
    index: Path  # manifest.jsonl: audio, text, seconds per phrase said
    phrases: int  # lines to say
    said: int  # phrases with a file now
    kept: int  # of which said by an earlier run
    failed: tuple[str, ...]  # "'phrase': why" for phrases the model could not say


def read_lines(lines: Path) -> list[str]:
    try:
        texts = [t.strip() for t in lines.read_text(encoding="utf-8").splitlines() if t.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {lines} as text: {exc}") from None
    if not texts:
        raise ValueError(f"{lines}: no phrase to say (every line is blank)")
    return texts


def said_before(folder: Path, texts: list[str]) -> dict[int, dict[str, Any]]:
    """The index rows of phrases whose file is there and whose text is unchanged."""
    index = folder / "manifest.jsonl"
    said: dict[int, dict[str, Any]] = {}
    if not index.is_file():
        return said
    for line in index.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            row = json.loads(line)
            n = int(Path(row["audio"]).stem)
            if n < len(texts) and row["text"] == texts[n] and (folder / row["audio"]).is_file():
                said[n] = row
    return said


def say_lines(load_model: Callable[[], Any], texts: list[str], folder: Path,
              batch_size: int = 8, progress: Callable[[int, int], None] | None = None) -> Said:
    """Say `texts` into `folder` (0000.wav, ...) with a token model (`load_model` is called
    only when something is left to say)."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, not {batch_size}")
    index = folder / "manifest.jsonl"
    said = said_before(folder, texts)
    todo = [n for n in range(len(texts)) if n not in said]
    failed: list[str] = []
    if not todo:
        return Said(index, len(texts), len(said), len(said), ())
    lm = load_model()
    if lm.voice is None:
        raise ModelError("this token model has no unit-to-speech decoder to speak with")
    folder.mkdir(parents=True, exist_ok=True)
    kept = len(said)
    for start in range(0, len(todo), batch_size):
        group = todo[start: start + batch_size]
        spoken = lm.speak_units_batch([texts[n] for n in group], batch_size)
        for n, units in zip(group, spoken, strict=True):
            if not units:
                failed.append(f"{texts[n]!r}: the model ended the audio before any unit")
                continue
            audio = lm.voice.decode((np.asarray(units, np.int64),))
            save(audio, folder / f"{n:04d}.wav")
            said[n] = {"audio": f"{n:04d}.wav", "text": texts[n],
                       "seconds": round(audio.duration, 3)}
        # the index after every batch: what is listed is finished
        index.write_text("".join(json.dumps(said[k]) + "\n" for k in sorted(said)),
                         encoding="utf-8")
        if progress:
            progress(len(said) + len(failed), len(texts))
    return Said(index, len(texts), len(said), kept, tuple(failed))
