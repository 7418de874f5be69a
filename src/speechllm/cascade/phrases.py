"""Contextual biasing after recognition: a context phrase the recogniser heard as something
that sounds alike ("Z. Big New" for Zbigniew, "Hefa Brennan" for Aoife Brennan) is put back.

The misheard forms are usually close in sound. Each phrase is compared with every run of up
to its word count + 2 words of the transcript on a crude sound key (letters only, look-alike
consonants merged, doubled letters collapsed); the best run above `threshold` is replaced by
the phrase, the most similar first, runs never overlapping.

Before the spotter, the cascade may hear the clip again with a shortlist of the phrases as
Whisper hotwords (`Shortlist`, `hear_listed`). The shortlist's size and floor and the
spotter's threshold were chosen on the biasing dev set and judged on a held-out one
(bench/biasing.py, docs/benchmarks.md).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from rapidfuzz import fuzz

from speechllm.asr.base import ASR, ASROptions, Segment
from speechllm.audio import Audio
from speechllm.sounds import sound_key, vowelled_key


def _runs(words: Sequence[str], phrases: Sequence[str]) -> list[tuple[int, int, str]]:
    """(start, stop, sound key) of every run of words a phrase may have been heard as: up to
    the longest phrase's word count + 2 words. Keyed once per text, not once per phrase."""
    longest = max((len(p.split()) for p in phrases), default=0) + 2
    return [(start, stop, sound_key(" ".join(words[start:stop])))
            for start in range(len(words))
            for stop in range(start + 1, min(len(words), start + longest) + 1)]


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
    threshold: float = 0.85  # similarity of sound keys (0-1) a run needs to become the phrase
    min_key: int = 4  # shorter phrases ("Al", "Bo") match too much by chance: left alone

    def apply(self, text: str, phrases: Sequence[str]) -> str:
        words = text.split()
        named = _named(words)
        runs = _runs(words, phrases)
        found: list[tuple[float, int, int, str]] = []
        for phrase in phrases:
            key = sound_key(phrase)
            if len(key) < self.min_key or phrase.lower() in text.lower():
                continue
            size = len(phrase.split())
            best: tuple[float, int, int, str] | None = None
            for start, stop, run in runs:
                if stop - start > size + 2 or not run or \
                        abs(len(run) - len(key)) > 0.4 * len(key) or not any(named[start:stop]):
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


@dataclass(frozen=True)
class Shortlist:
    """The few listed phrases that a first transcript may hold misheard, to read to the
    recogniser as hotwords in a second pass. A hundred hotwords in a small Whisper's prompt
    pull every word towards them (other-word WER rose 0.25 -> 0.32 on the biasing set); a
    handful chosen by sound pulls only where one was likely said.

    A phrase's likeness to a run of words is the mean of two keys' similarities: the
    consonant key alone let short names ("Cathal", "Tadhg") crowd out the said one by chance
    (on the dev set the said phrase was shortlisted 32 times of 49 with it, 39 with both)."""

    size: int = 8  # at most this many phrases (chosen on the dev set among 5 and 8)
    # how alike (0-1) a phrase must sound to some run of words to be listed, and to the words
    # it would replace to be taken
    floor: float = 0.4
    # a first pass at least this sure of each of its segments (mean token log-probability) is
    # not heard again: rare names leave Whisper unsure (every dev-set miss was under -0.2),
    # while 113 of the 164 real sentences, with nothing listed said, were above it
    sure: float = -0.2

    def pick(self, text: str, phrases: Sequence[str]) -> list[str]:
        words = text.split()
        runs = [(start, stop, key, vowelled_key(" ".join(words[start:stop])))
                for start, stop, key in _runs(words, phrases)]
        scored: list[tuple[float, str]] = []
        for phrase in phrases:
            key, beat = sound_key(phrase), vowelled_key(phrase)
            if len(key) < 3 or phrase.lower() in text.lower():
                continue  # too short to match by sound, or heard already
            size = len(phrase.split())
            best = max(((fuzz.ratio(run, key) + fuzz.ratio(run_beat, beat)) / 200
                        for start, stop, run, run_beat in runs
                        if stop - start <= size + 2 and run
                        and abs(len(run) - len(key)) <= 0.5 * len(key)), default=0.0)
            if best >= self.floor:
                scored.append((best, phrase))
        scored.sort(key=lambda s: -s[0])
        return [p for _, p in scored[: self.size]]


def _plain(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


def _bare(word: str) -> str:
    """A word as a phrase lists it: "Xiomara's" is the listed "Xiomara" with a possessive."""
    return re.sub(r"'s$", "", _plain(word))


def take_phrases(first: str, second: str, phrases: Sequence[str], alike: float = 0.5) -> str:
    """`first`, with the stretches where `second` differs taken from `second` only when they
    bring in words of `phrases` in place of words that sound `alike` (0-1): the second pass,
    biased towards the phrases, may put a name right, but everywhere else the unbiased first
    pass is kept word for word, and a name is never written over words that sound unlike it
    (a bias-prompted Whisper may write a listed name where someone else's was said)."""
    a, b = first.split(), second.split()
    listed = {_bare(w) for p in phrases for w in p.split()} - {""}
    out: list[str] = []
    matcher = difflib.SequenceMatcher(a=[_plain(w) for w in a], b=[_plain(w) for w in b],
                                      autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        new = {_bare(w) for w in b[j1:j2]} - {_bare(w) for w in a[i1:i2]}
        was, now = sound_key(" ".join(a[i1:i2])), sound_key(" ".join(b[j1:j2]))
        # as long as what it replaces, too: a name is not several lost words
        takes = op != "equal" and bool(new & listed) and bool(was) and \
            abs(len(was) - len(now)) <= 0.4 * len(now) and fuzz.ratio(was, now) / 100 >= alike
        out.extend(b[j1:j2] if takes else a[i1:i2])
    return " ".join(out)


def least_sure(segments: Iterable[Segment]) -> float:
    """How sure the recogniser was of its least sure segment (mean token log-probability):
    what `hear_listed` gates its second pass on."""
    return min((s.avg_logprob for s in segments), default=float("-inf"))


def hear_listed(asr: ASR, audio: Audio, options: ASROptions, text: str,
                phrases: Sequence[str], shortlist: Shortlist,
                confidence: float = float("-inf")) -> str:
    """`text` (what `asr` heard in `audio` unbiased; `confidence`: its least sure segment's
    mean token log-probability) after a second pass with the shortlisted phrases as hotwords,
    taking from it only what brings a phrase in."""
    if confidence >= shortlist.sure:
        return text
    short = shortlist.pick(text, phrases)
    if not short:
        return text
    again = asr.transcribe(audio, replace(options, hotwords=", ".join(short)))
    return take_phrases(text, again.text, short, shortlist.floor)
