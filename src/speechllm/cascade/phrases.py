"""Contextual biasing after recognition: a context phrase the recogniser heard as something
that sounds alike ("Z. Big New" for Zbigniew, "Hefa Brennan" for Aoife Brennan) is put back.

Whisper's hotwords help little with a list of 100 names in a small model; the misheard forms
are usually close in sound. Each phrase is compared with every run of up to its word count +
2 words of the transcript on a crude sound key (letters only, look-alike consonants merged,
doubled letters collapsed); the best run above `threshold` is replaced by the phrase, the
most similar first, runs never overlapping. The threshold was chosen on half of the biasing
set and judged on the other half (bench/biasing.py, docs/benchmarks.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz

_SOUNDS = str.maketrans({"c": "k", "q": "k", "z": "s", "x": "s", "v": "f", "w": "f",
                         "y": "i", "j": "g"})


def sound_key(text: str) -> str:
    """Letters only, look-alike consonants merged, doubled letters collapsed, and each word's
    vowels after its first letter dropped (a name's vowels are what a recogniser gets wrong
    most: "Hefa Brennan" for Aoife Brennan)."""
    words = re.sub(r"[^a-z ]", "", re.sub(r"'s\b", "", text.lower()).replace("ph", "f")
                   .replace("-", " ")).split()
    skeleton = "".join(w[0] + re.sub(r"[aeiouy]", "", w[1:]) for w in words)
    return re.sub(r"(.)\1+", r"\1", skeleton.translate(_SOUNDS))


def _named(words: Sequence[str]) -> list[bool]:
    """Which words the recogniser wrote as a name: capitalised, and not where a sentence
    starts. Only runs holding one are candidates: common words ("timer for") would otherwise
    sound like a listed term ("Terraform") often enough to do harm."""
    out = []
    for n, w in enumerate(words):
        starts = n == 0 or words[n - 1].endswith((".", "?", "!"))
        out.append((w[:1].isupper() and not starts) or (len(w) == 2 and w.endswith(".")))
    return out


@dataclass(frozen=True)
class PhraseSpotter:
    threshold: float = 0.8  # similarity of sound keys (0-1) a run needs to become the phrase
    min_key: int = 4  # shorter phrases ("Al", "Bo") match too much by chance: left alone

    def apply(self, text: str, phrases: Sequence[str]) -> str:
        words = text.split()
        named = _named(words)
        found: list[tuple[float, int, int, str]] = []
        for phrase in phrases:
            key = sound_key(phrase)
            if len(key) < self.min_key or phrase.lower() in text.lower():
                continue
            size = len(phrase.split())
            best: tuple[float, int, int, str] | None = None
            for start in range(len(words)):
                for stop in range(start + 1, min(len(words), start + size + 2) + 1):
                    run = sound_key(" ".join(words[start:stop]))
                    if not run or abs(len(run) - len(key)) > 0.4 * len(key) or \
                            not any(named[start:stop]):
                        continue
                    score = fuzz.ratio(run, key) / 100
                    if score >= self.threshold and (best is None or score > best[0]):
                        best = (score, start, stop, phrase)
            if best is not None:
                found.append(best)
        taken: set[int] = set()
        replace: list[tuple[int, int, str]] = []
        # a long phrase matching well is less likely chance than a short one: it goes first
        ranked = sorted(found, key=lambda f: f[0] * len(sound_key(f[3])), reverse=True)
        for _, start, stop, phrase in ranked:
            if taken.isdisjoint(range(start, stop)):
                taken.update(range(start, stop))
                replace.append((start, stop, phrase))
        for start, stop, phrase in sorted(replace, reverse=True):
            last = words[stop - 1]
            tail = ("'s" if re.search(r"'s\W*$", last) else "") + re.sub(r"^.*?(\W*)$", r"\1",
                                                                          last)
            words[start:stop] = [phrase + tail]  # keeps a possessive and "." or ","

        return " ".join(words)
