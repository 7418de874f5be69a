"""English text normalisation for scoring ASR output.

Lower-cases, drops punctuation, spells out integers 0-999 ("9" == "nine", "42" == "forty two")
and collapses whitespace, so WER counts recognition errors, not formatting choices. For digit
strings (phone numbers, codes) `digits=True` reads every numeral digit by digit ("871" ==
"eight seven one").
"""

from __future__ import annotations

import re

import jiwer

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def spell_number(n: int) -> str:
    """0 <= n < 1000 in words, without "and"."""
    if not 0 <= n < 1000:
        raise ValueError(f"only 0-999 are spelled, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    rest = n % 100
    return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + spell_number(rest))


def normalize(text: str, digits: bool = False) -> str:
    text = text.lower().replace("-", " ")
    if digits:
        text = re.sub(r"\d+", lambda m: " " + " ".join(_ONES[int(c)] for c in m.group()) + " ",
                      text)
    text = re.sub(r"\b\d{1,3}\b", lambda m: spell_number(int(m.group())), text)
    text = re.sub(r"[^\w\s']", " ", text).replace("'", "")
    return " ".join(text.split())


def word_errors(reference: str, hypothesis: str, digits: bool = False) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words) after normalisation; an empty
    reference counts every hypothesis word as an insertion."""
    ref, hyp = normalize(reference, digits), normalize(hypothesis, digits)
    n = len(ref.split())
    if n == 0:
        return len(hyp.split()), 0
    if not hyp:
        return n, n
    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, n


def wer(references: list[str], hypotheses: list[str], digits: bool = False) -> float:
    """Corpus WER: all word errors over all reference words."""
    counts = [word_errors(r, h, digits) for r, h in zip(references, hypotheses, strict=True)]
    return sum(e for e, _ in counts) / max(1, sum(n for _, n in counts))
