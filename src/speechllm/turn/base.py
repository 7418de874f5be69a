"""End-of-turn detection: has the user finished, or only paused?

A voice-activity detector hears silence; it cannot tell "What is the capital of ... France?"
from "What is the capital of France?". A turn detector looks at the words' sound (intonation,
a trailing "of") and says how likely the turn is complete, so an assistant can answer after a
short pause when the user is done and wait longer when they are not.
"""

from __future__ import annotations

from typing import Protocol

from speechllm.audio import Audio


class TurnDetector(Protocol):
    def complete(self, audio: Audio) -> float:
        """The probability that the user's turn, which ends with `audio`, is complete."""
        ...
