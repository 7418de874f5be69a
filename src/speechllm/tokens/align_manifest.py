"""`speechllm tokens align`: word timings for every clip of a manifest, resumable.

Each row gets "words": a list of [word, start, end] in seconds (needed by a token model with
`"interleave_words": true`). Clips the output already aligned (same audio, same text) keep
their timings, and so do those an interrupted run had aligned: progress is written beside the
target as it goes (so relative audio paths hold) every `save_every` clips.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechllm.audio import Audio, load
from speechllm.data import Item, read_manifest, write_manifest
from speechllm.errors import SpeechLLMError
from speechllm.tokens.align import align_packed, align_words, packs

SAVE_EVERY = 50  # clips aligned between saves of the progress (~30 s of Whisper base)


@dataclass(frozen=True)
class Aligned:
    target: Path  # the manifest written
    rows: int  # clips in it
    kept: int  # clips whose timings came from before
    failed: tuple[str, ...]  # "clip: why" for clips kept without timings


def align_manifest(manifest: Path, target: Path, make_asr: Callable[[], Any],
                   redo: bool = False, pack: float = 29.0,
                   progress: Callable[[int, int], None] | None = None,
                   save_every: int | None = None) -> Aligned:
    """Align every clip of `manifest` into `target`. `make_asr` gives the Whisper
    (`FasterWhisperASR`) and is called only when some clip needs aligning; `pack` seconds of
    clips share one Whisper window (0: one clip at a time)."""
    partial = target.with_name(f".{target.name}.partial")
    every = save_every or SAVE_EVERY
    items = read_manifest(manifest)
    earlier = [] if redo or not target.is_file() else read_manifest(target)
    # a partial file cut mid-write is ignored: it is only a progress cache
    with contextlib.suppress(SpeechLLMError, ValueError):
        earlier += read_manifest(partial) if partial.is_file() and not redo else []
    done = {(old.audio, old.text): old.fields["words"] for old in earlier
            if "words" in old.fields}
    whisper = make_asr() if len(done) < len(items) else None
    rows: dict[int, Item] = {}
    failed: list[str] = []
    kept = 0

    def advance() -> None:
        if progress:
            progress(len(rows), len(items))

    def finish(n: int, item: Item, words: Any) -> None:
        if isinstance(words, Exception):  # kept, without timings
            failed.append(f"{item.audio.name}: {words}")
        else:
            timed = [[w, round(a, 3), round(b, 3)] for w, a, b in words]
            item = dataclasses.replace(item, fields={**item.fields, "words": timed})
        rows[n] = item
        advance()
        if len(rows) % every == 0:
            write_manifest([rows[k] for k in sorted(rows)], partial)

    def align(group: list[tuple[int, Item, Audio]]) -> None:
        clips = [(audio, item.text or "") for _, item, audio in group]
        try:  # together; one clip that cannot be aligned sends the group one by one
            found: list[Any] = align_packed(whisper, clips)
        except (SpeechLLMError, ValueError):
            found = []
            for clip in clips:
                try:
                    found.append(align_words(whisper, *clip))
                except (SpeechLLMError, ValueError) as exc:
                    found.append(exc)
        for (n, item, _), words in zip(group, found, strict=True):
            finish(n, item, words)

    def to_align() -> Iterator[tuple[int, Item, Audio]]:
        """The clips still to align, loaded one at a time (the others finished)."""
        nonlocal kept
        for n, item in enumerate(items):
            if (item.audio, item.text) in done:
                rows[n] = dataclasses.replace(
                    item, fields={**item.fields, "words": done[item.audio, item.text]})
                kept += 1
                advance()
                continue
            try:
                yield n, item, load(item.audio)
            except (SpeechLLMError, ValueError) as exc:
                finish(n, item, exc)

    for group in packs(to_align(), lambda clip: clip[2].duration, window=pack):
        align(group)
    write_manifest([rows[k] for k in sorted(rows)], partial).replace(target)
    return Aligned(target, len(rows), kept, tuple(failed))
