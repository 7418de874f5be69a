"""Whether a transcript reads as a finished turn, from its last word.

Synthetic and real pauses alike often come after a word that cannot end an English sentence
("What is the capital of ...", "Can you tell me how to ..."): an article, a preposition, a
conjunction, a possessive. Whisper tends to close such a fragment with "?" or ".", so the
punctuation says little and the word says a lot.
"""

from __future__ import annotations

import re

# Words after which an English turn is almost never over. Kept short on purpose: a word that
# can end a question ("Where are you from?") waits longer for nothing on every such turn.
DANGLING = frozenset((
    "a", "an", "the", "of", "to", "for", "with", "and", "or", "but", "nor", "if", "because",
    "so", "than", "as", "by", "into", "onto", "my", "your", "our", "their", "his", "her", "its",
    "whose", "very", "more", "most", "less", "least",
))
_WORD = re.compile(r"[a-z']+")


def looks_unfinished(transcript: str) -> bool:
    """True when the transcript ends on a dangling word, a comma, a dash or an ellipsis."""
    text = transcript.strip().lower()
    if not text:
        return False
    if text.endswith((",", "-", "...", "…", ";", ":")):
        return True
    words = _WORD.findall(text)
    return bool(words) and words[-1] in DANGLING
