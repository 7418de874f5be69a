"""Word-by-word speaking for many phrases at once: the batched decoding loop behind
`TokenSpeechLM.speak_words` and `speak_words_batch`.

Each phrase is one row of the batch. A row's next input is a queue of tokens: the prompt and
each word's text (given), or the unit it has just written. Every row feeds the same number of
tokens at every step (all of their queues' shortest, or one token while any row is writing),
so all rows stay the same length: no padding, no attention mask, and default positions. One
phrase alone therefore decodes exactly as before (its prompt and each word's text in one
chunk), and a phrase decodes the same in a batch as alone. A row that has said its last word
leaves the batch (its cache rows are dropped), so sorting phrases by length keeps batches busy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from speechllm.tokens.model import TokenSpeechLM


@dataclass
class _Row:
    """One phrase being spoken: its words, its budget and what it has said so far."""

    index: int  # the phrase's place in the caller's list
    words: list[str]
    budget: int  # units for the whole phrase
    queue: list[int]  # tokens to feed next (given text, or the unit just written)
    said: list[list[int]] = field(default_factory=list)  # finished words' units
    current: list[int] = field(default_factory=list)  # the word being written
    cap: int = 0  # most units the current word may have


def speak_rows(model: TokenSpeechLM, texts: Sequence[str], budgets: Sequence[int],
               floor: int, batch_size: int = 8) -> list[list[list[int]]]:
    """Each text's units (0..k-1), one list per word, spoken word by word with greedy
    decoding: the model writes a word's units after its text until it ends them (not before
    `floor` units) or the word's cap (`model.max_units(word)`, and what is left of the
    phrase's budget) ends them."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    out: list[list[list[int]]] = [[] for _ in texts]
    # longest first, so that rows of a batch end at about the same step
    order = sorted(range(len(texts)), key=lambda n: -len(texts[n]))
    for start in range(0, len(order), batch_size):
        rows = []
        for n in order[start: start + batch_size]:
            row = _Row(n, texts[n].split(), budgets[n], model.say_ids(texts[n]))
            if _next_word(model, row, []):
                rows.append(row)
        _decode(model, rows, floor)
        for row in rows:
            out[row.index] = row.said
    return out


def _next_word(model: TokenSpeechLM, row: _Row, before: list[int]) -> bool:
    """Queue the next word's text after `before` (what closes the last word); False when the
    phrase is said (no word left, or its budget spent)."""
    done = len(row.said)
    if done == len(row.words):
        return False
    row.cap = min(row.budget - sum(map(len, row.said)), model.max_units(row.words[done]))
    if row.cap <= 0:
        return False
    row.queue = [*row.queue, *before, *model.word_ids(row.words[done])]
    row.current = []
    return True


def _decode(model: TokenSpeechLM, rows: list[_Row], floor: int) -> None:
    causal = model._causal()
    stop = model.k  # the end marker's column in audio_logits
    cache = None
    while rows:
        width = min(len(r.queue) for r in rows)
        fed = torch.stack([model.embed_ids(r.queue[:width]) for r in rows])
        for r in rows:
            r.queue = r.queue[width:]
        result = causal.model(inputs_embeds=fed, cache=cache, use_cache=True)
        cache = result.cache
        writing = [b for b, r in enumerate(rows) if not r.queue]
        if not writing:
            continue
        scores = dict(zip(writing, model.audio_logits(result.last_hidden_state[writing, -1]),
                          strict=True))
        keep = []
        for b, r in enumerate(rows):
            if r.queue:  # still being given its text
                keep.append(b)
                continue
            row_scores = scores[b]
            if len(r.current) < floor:
                row_scores[stop] = -torch.inf
            unit = int(row_scores.argmax())
            if unit == stop:  # the model ended the word: the marker goes in with the next word
                r.said.append(r.current)
                alive = _next_word(model, r, [model.end_id])
            else:
                r.current.append(unit)
                token = model.base_vocab + unit
                if len(r.current) < r.cap:
                    r.queue = [token]
                    alive = True
                else:  # the cap ended the word: its last unit and the marker go in next
                    r.said.append(r.current)
                    alive = _next_word(model, r, [token, model.end_id])
            if alive:
                keep.append(b)
        if len(keep) < len(rows):
            if keep:
                cache.batch_select_indices(torch.tensor(keep))
            rows = [rows[b] for b in keep]
