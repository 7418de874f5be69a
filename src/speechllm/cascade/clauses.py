"""Cut a stream of text deltas into clauses that TTS can speak while the LLM goes on."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

# A sentence ends at . ! ? (or their CJK forms) followed by whitespace; "3.5" and "e.g.x" do not.
_SENTENCE_END = re.compile(r"[.!?…。！？]+[\"')\]]*\s")  # noqa: RUF001
_LINE_END = re.compile(r"\S[^\n]*\n")  # a finished line: list items, headings, paragraphs
_CLAUSE_END = re.compile(r"[,;:—–]\s")  # noqa: RUF001
_WORD_END = re.compile(r"\S\s")  # the end of a finished word
_MARKDOWN = re.compile(r"[*_#`>|~]+|^\s*[-+]\s+|^\s*\d+\.\s+", re.MULTILINE)


def speakable(text: str) -> str:
    """Text with markdown marks removed and whitespace collapsed: what TTS should read."""
    return " ".join(_MARKDOWN.sub(" ", text).split())


@dataclass
class ClauseSplitter:
    """Feed deltas; get back every clause that is finished.

    A sentence end or a line break (LLMs write lists one item per line) always closes a clause.
    A comma-like break closes one only when the clause has `min_chars` already, so TTS is not
    called on fragments like "Well,".
    """

    min_chars: int = 24
    # > 0: the first clause is cut after this many words if no clause end comes first, so
    # TTS starts on a few words instead of waiting for the whole first sentence
    first_words: int = 0
    _buffer: str = field(default="", init=False)
    _cut_any: bool = field(default=False, init=False)

    def feed(self, delta: str) -> Iterator[str]:
        self._buffer += delta
        while True:
            cut = self._next_cut()
            if cut is None:
                return
            clause, self._buffer = self._buffer[:cut], self._buffer[cut:]
            if text := speakable(clause):
                self._cut_any = True
                yield text

    def _next_cut(self) -> int | None:
        sentence = _SENTENCE_END.search(self._buffer)
        line = _LINE_END.search(self._buffer)
        if line is not None and (sentence is None or line.end() < sentence.end()):
            sentence = line
        for m in _CLAUSE_END.finditer(self._buffer):
            if sentence is not None and m.start() > sentence.start():
                break
            if m.start() >= self.min_chars:
                return m.end()
        if sentence is None and self.first_words and not self._cut_any:
            words = list(_WORD_END.finditer(self._buffer))
            if len(words) >= self.first_words:
                return words[self.first_words - 1].end()
        return sentence.end() if sentence else None

    def flush(self) -> Iterator[str]:
        """Whatever is left at the end of the answer."""
        rest, self._buffer = self._buffer, ""
        if text := speakable(rest):
            yield text
