"""How words sound, crudely: a key that a recogniser's mishearings of a word tend to share.

Whisper writes a name it does not know, or a word said by a robotic voice, as something that
sounds alike ("Z. Big New" for Zbigniew, "All light." for alright, "Houdan" for hold on). The
key keeps letters only, merges look-alike consonants, collapses doubled letters and drops each
word's vowels after its first letter, so such pairs share most of it. Used by contextual
biasing (speechllm.cascade.phrases) and by the barge-in judge (speechllm.turn.barge_in).
"""

from __future__ import annotations

import re
from functools import lru_cache

from rapidfuzz import fuzz

_SOUNDS = str.maketrans({"c": "k", "q": "k", "z": "s", "x": "s", "v": "f", "w": "f",
                         "y": "i", "j": "g"})


@lru_cache(maxsize=8192)  # the judge compares the same few phrases with every clip
def sound_key(text: str) -> str:
    """Letters only, look-alike consonants merged, doubled letters collapsed, and each word's
    vowels after its first letter dropped (a name's vowels are what a recogniser gets wrong
    most: "Hefa Brennan" for Aoife Brennan)."""
    words = re.sub(r"[^a-z ]", "", re.sub(r"'s\b", "", text.lower()).replace("ph", "f")
                   .replace("-", " ")).split()
    skeleton = "".join(w[0] + re.sub(r"[aeiouy]", "", w[1:]) for w in words)
    return re.sub(r"(.)\1+", r"\1", skeleton.translate(_SOUNDS))


@lru_cache(maxsize=8192)
def vowelled_key(text: str) -> str:
    """Like `sound_key`, but words run together and each run of vowels kept as one "a": the
    beat of a name as well as its consonants. Where the consonant key of a short name matches
    many runs of words by chance, this one tells them apart ("Wagadudu" for Ouagadougou)."""
    letters = re.sub(r"[^a-z]", "", re.sub(r"'s\b", "", text.lower()).replace("ph", "f"))
    return re.sub(r"(.)\1+", r"\1", re.sub(r"[aeiouy]+", "a", letters).translate(_SOUNDS))


def sounds_alike(one: str, other: str, floor: float) -> bool:
    """Whether two short phrases have the same key, or keys of 3 letters or more at least
    `floor` (0-1) similar. Keys of one or two letters are too coarse to compare loosely
    ("who" and "hey" are both "h"), so only equal ones count."""
    a, b = sound_key(one), sound_key(other)
    if len(a) >= 2 and a == b:
        return True
    return min(len(a), len(b)) >= 3 and fuzz.ratio(a, b) >= 100 * floor
