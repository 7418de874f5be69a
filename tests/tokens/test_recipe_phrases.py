"""The token recipe's held-out phrases are really held out: in either held-out set, never a
training phrase (nor one of the thin-frame phrases a training run may add), while every word of
them is trained on (the claim docs/tokens.md makes about its TTS figures)."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parents[2] / "recipes" / "token_digits"


def lines(name: str) -> list[str]:
    return [t for t in (HERE / name).read_text().splitlines() if t.strip()]


def test_heldout_phrases_are_never_trained_on_but_their_words_are():
    train = [json.loads(line)["text"] for name in ("speak_train.jsonl",
             "speak_thin_frames.jsonl") for line in lines(name)]
    first, more = lines("speak_heldout.txt"), lines("speak_heldout_more.txt")
    assert len(first) == 37 and len(more) == 70
    assert not (set(first) | set(more)) & set(train)
    assert not set(first) & set(more)
    trained_words = {w for t in train for w in t.split()}
    assert {w for t in first + more for w in t.split()} <= trained_words
