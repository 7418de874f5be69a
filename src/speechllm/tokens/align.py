"""Word timings for speech the token LM learns to say, and the unit spans they give.

A token LM that writes a whole phrase's units after reading its text must learn on its own
which units belong to which word; on small data it drops and repeats words (the classic
attention failure of autoregressive TTS). Interleaving fixes the alignment instead: each word's
text, then that word's units (as in interleaved speech-text LMs). That needs to know where each
word is in the training clips, which comes from Whisper's forced alignment of the known text,
with each boundary moved into the pause between the words when there is one (Whisper's
cross-attention timings are often 0.1 s off, several units at 25 units/s).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import pairwise
from typing import TypeVar

import numpy as np

from speechllm.audio import Audio
from speechllm.errors import AudioError

T = TypeVar("T")

# (word, start s, end s); words are the text's whitespace-separated words
WordTiming = tuple[str, float, float]

HOP = 0.01  # energy frame hop (s)
QUIET_DB = -26.0  # a frame this far below the clip's loudest is a pause
MIN_PAUSE = 0.04  # shorter quiet stretches (a stop's closure, a flicker) are not pauses (s)
SEARCH = 0.15  # how far from Whisper's boundary a pause is looked for (s)
# Whisper encodes a padded 30 s window whatever the clip's length, so short clips are aligned
# several to a window, a silent gap between them: one encode serves a dozen 2-s clips.
PACK_SECONDS = 29.0
PACK_GAP = 0.4  # s of silence between packed clips


def merge_to_words(text: str, pieces: Sequence[tuple[str, float, float]]) -> list[WordTiming]:
    """Whisper's words (it splits off punctuation) merged back into `text.split()`."""
    out: list[WordTiming] = []
    queue = list(pieces)
    for word in text.split():
        got, start, end = "", None, 0.0
        while queue and len(got) < len(word):
            piece, s, e = queue.pop(0)
            got += piece.strip()
            start = s if start is None else start
            end = e
        if got != word or start is None:
            raise ValueError(f"cannot match the alignment to the word {word!r} (got {got!r})")
        out.append((word, start, end))
    if queue:
        raise ValueError(f"the alignment has words left over: {[p[0] for p in queue]}")
    return out


def _loudness_db(audio: Audio) -> np.ndarray:
    x = audio.samples.astype(np.float64)
    hop = max(1, round(HOP * audio.sample_rate))
    frames = len(x) // hop
    rms = np.sqrt(np.mean(x[: frames * hop].reshape(frames, hop) ** 2, axis=1) + 1e-12)
    return 20 * np.log10(rms / max(float(rms.max()), 1e-9))


def refine(audio: Audio, words: Sequence[WordTiming]) -> list[WordTiming]:
    """Move each boundary between two words to the middle of the nearest pause that reaches
    within `SEARCH` s of it, if there is one; otherwise keep Whisper's. Word i then ends where
    word i+1 starts, so the spans cover the clip without gaps."""
    quiet = _loudness_db(audio) < QUIET_DB
    # pauses (start, end): quiet runs inside the speech (not the clip's leading and trailing
    # silence); a run may reach into a soft onset such as /s/, so it is measured by its edges
    pauses, i = [], 0
    while i < len(quiet):
        j = i
        while j < len(quiet) and quiet[j]:
            j += 1
        if j - i >= MIN_PAUSE / HOP and i > 0 and j < len(quiet):
            pauses.append((i * HOP, j * HOP))
        i = max(j, i + 1)
    cuts: list[float] = []
    for (_, start0, end), (_, start, end1) in pairwise(words):
        at = (end + start) / 2
        near = [(max(0.0, a - at, at - b), (a + b) / 2) for a, b in pauses]
        near = [(d, mid) for d, mid in near if d <= SEARCH and start0 < mid < end1
                and (not cuts or mid > cuts[-1])]
        cuts.append(min(near)[1] if near else at)
    for n in range(1, len(cuts)):  # never out of order (two words sharing one pause)
        cuts[n] = max(cuts[n], cuts[n - 1])
    bounds = [0.0, *cuts, audio.duration]
    return [(w, bounds[n], bounds[n + 1]) for n, (w, _, _) in enumerate(words)]


def align_words(asr: object, audio: Audio, text: str) -> list[WordTiming]:
    """Word spans of `text` in `audio` with a `FasterWhisperASR` (its `align`)."""
    if not text.split():
        raise ValueError("nothing to align: the text is empty")
    if audio.duration <= 0:
        raise AudioError("audio has 0 samples")
    timed = asr.align(audio, text)  # type: ignore[attr-defined]
    words = merge_to_words(text, [(w.text, w.start, w.end) for w in timed])
    return refine(audio.resample(16000), words)


def packs(clips: Iterable[T], seconds: Callable[[T], float], window: float = PACK_SECONDS,
          gap: float = PACK_GAP) -> Iterator[list[T]]:
    """Consecutive clips grouped so that each group, gaps included, fits one window (a clip
    longer than the window is a group of its own, for `align_words` to refuse). Lazy: a
    group is given as soon as the next clip would not fit, so clips can be loaded as they
    are aligned."""
    group: list[T] = []
    used = 0.0
    for clip in clips:
        length = seconds(clip)
        if group and used + gap + length > window:
            yield group
            group, used = [], 0.0
        used += (gap if group else 0.0) + length
        group.append(clip)
    if group:
        yield group


def align_packed(asr: object, clips: Sequence[tuple[Audio, str]],
                 gap: float = PACK_GAP) -> list[list[WordTiming]]:
    """`align_words` of several short clips at once: joined with `gap` s of silence into one
    window, aligned as one text, split back into each clip's words. About 14 times faster
    than clip by clip on 1-2 s clips; 93% of word boundaries fall within 80 ms of the
    clip-by-clip alignment's (docs/token_digits/results.md#recipe_speed)."""
    if len(clips) == 1:
        return [align_words(asr, *clips[0])]
    audios = [audio.resample(16000) for audio, _ in clips]
    for (_, text), audio in zip(clips, audios, strict=True):
        if not text.split():
            raise ValueError("nothing to align: the text is empty")
        if audio.duration <= 0:
            raise AudioError("audio has 0 samples")
    silence = np.zeros(round(gap * 16000), dtype=np.float32)
    parts, starts, at = [], [], 0.0
    for audio in audios:
        starts.append(at)
        parts += [audio.samples.astype(np.float32), silence]
        at += audio.duration + gap
    text = " ".join(" ".join(t.split()) for _, t in clips)
    timed = asr.align(Audio(np.concatenate(parts[:-1]), 16000), text)  # type: ignore[attr-defined]
    words = merge_to_words(text, [(w.text, w.start, w.end) for w in timed])
    out, first = [], 0
    for (_, clip_text), audio, start in zip(clips, audios, starts, strict=True):
        count = len(clip_text.split())
        mine = [(w, min(max(0.0, a - start), audio.duration),
                 min(max(0.0, b - start), audio.duration))
                for w, a, b in words[first: first + count]]
        first += count
        out.append(refine(audio, mine))
    return out


def unit_spans(count: int, rate: float, words: Sequence[WordTiming]) -> list[tuple[int, int]]:
    """[start, end) unit indices of each word in a clip of `count` units at `rate` per second:
    contiguous, covering all the units (leading silence goes to the first word, trailing to
    the last)."""
    cuts = [min(count, max(0, round(start * rate))) for _, start, _ in words[1:]]
    for n in range(1, len(cuts)):
        cuts[n] = max(cuts[n], cuts[n - 1])
    bounds = [0, *cuts, count]
    return [(bounds[n], bounds[n + 1]) for n in range(len(words))]
