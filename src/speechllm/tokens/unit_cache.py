"""Units of audio files already encoded, shared by every step that encodes with one unit
tokenizer: fitting it, training a unit-to-speech decoder on it, training a token LM on it.

Whisper's encoder is most of the cost of those steps' data preparation, and each would
otherwise encode the same clips again (the token recipe encoded 4965 clips about 9000 times).
One file per tokenizer (`<cache dir>/units/<key>.npz`, the key a digest of its settings and
centroids, so a refitted tokenizer never reads another's units), each clip's units under its
resolved path, size and modification time, so an edited or replaced file is encoded afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from speechllm.audio import Audio
from speechllm.errors import AudioError
from speechllm.tokens.semantic import KMeansUnits

ENCODE_CHUNK = 32  # clips loaded and encoded at a time (the audio is not all held at once)


def tokenizer_key(units: KMeansUnits) -> str:
    """What a clip's units depend on besides the clip: the settings and the centroids."""
    digest = hashlib.sha256(json.dumps(asdict(units.config), sort_keys=True).encode())
    digest.update(np.ascontiguousarray(units.centroids).tobytes())
    return digest.hexdigest()[:16]


def file_stamp(path: str | os.PathLike[str]) -> str:
    """The cache's name for an audio file as it is now."""
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"{path}: no such file")
    st = p.stat()
    return f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"


class UnitCache:
    def __init__(self, units: KMeansUnits, folder: str | os.PathLike[str] | None = None) -> None:
        if folder is None:
            from speechllm.models import cache_dir

            folder = cache_dir() / "units"
        self.path = Path(folder) / f"{tokenizer_key(units)}.npz"
        self._clips: dict[str, np.ndarray] | None = None

    def clips(self) -> dict[str, np.ndarray]:
        if self._clips is None:
            self._clips = {}
            if self.path.is_file():
                try:
                    with np.load(self.path) as saved:
                        flat, ends = saved["units"], saved["ends"]
                        starts = np.concatenate([[0], ends[:-1]])
                        self._clips = {str(s): flat[a:b].astype(np.int64) for s, a, b
                                       in zip(saved["stamps"], starts, ends, strict=True)}
                except Exception:  # a damaged cache is only a cache: encode again
                    self._clips = {}
        return self._clips

    def get(self, stamp: str) -> np.ndarray | None:
        return self.clips().get(stamp)

    def put(self, found: dict[str, np.ndarray]) -> None:
        """Add clips and write the file (merged with what another process wrote meanwhile;
        written whole, then moved into place, so a reader never sees half a file)."""
        if not found:
            return
        mine = self.clips()
        self._clips = None
        merged = {**self.clips(), **mine, **found}
        self._clips = merged
        stamps = list(merged)
        seqs = [merged[s] for s in stamps]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(f".{self.path.stem}-{os.getpid()}.partial.npz")
            np.savez(partial, stamps=np.array(stamps),
                     units=np.concatenate(seqs).astype(np.int32) if seqs else np.zeros(0),
                     ends=np.cumsum([len(s) for s in seqs]))
            partial.replace(self.path)
        except OSError:
            pass  # a read-only cache only costs encoding again next time


def encode_files(units: KMeansUnits, paths: Sequence[str | os.PathLike[str]],
                 cache: UnitCache | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 audio: Callable[[int], Audio] | None = None) -> list[np.ndarray]:
    """Each file's units, from the cache where it has them; the others are loaded, encoded
    and added to it. `audio(n)`: file n's audio where the caller has it loaded already."""
    from speechllm.audio import load

    def audio_of(n: int) -> Audio:
        return audio(n) if audio is not None else load(paths[n])

    cache = cache or UnitCache(units)
    stamps = [file_stamp(p) for p in paths]
    out: list[np.ndarray | None] = [cache.get(s) for s in stamps]
    todo = [n for n, u in enumerate(out) if u is None]
    done = len(paths) - len(todo)
    for start in range(0, len(todo), ENCODE_CHUNK):
        chunk = todo[start:start + ENCODE_CHUNK]
        found = units.encode_many([audio_of(n) for n in chunk])
        for n, u in zip(chunk, found, strict=True):
            out[n] = u
        cache.put({stamps[n]: out[n] for n in chunk})  # type: ignore[misc]
        done += len(chunk)
        if progress:
            progress(done, len(paths))
    return [u for u in out if u is not None]
