"""Speculative decoding on a llama.cpp model with guesses that need no second model.

Each step feeds the model, in one batch, the tokens it must see (the last one chosen, text a
grammar forces) and a short guess of what comes next, and reads its logits at every guessed
position. A guess is kept while the model's own choice there agrees with it; the first
disagreement is replaced by the model's choice, which the same batch already gives. The
output is what decoding one token a step gives: greedy, the same argmax (up to the last bits
of batched arithmetic, as llama.cpp's prefix cache already allows); with a temperature, the
same distribution (the speculative-sampling rule, `choose`).

Why it pays here: on 2 cores an evaluation of a 0.5B model costs about 35 ms plus 6-9 ms a
token, so a kept guess costs a fifth of a step, and a wrong one nearly as much. The guesses
are text the rules force whose tokens they leave open, and what followed the text written
so far in the user's words (`lookup`): tool calls repeat them ("saying I left the door
open" -> `"message": "I left the door open"`), and where a value may start, the next number
the user said (the recogniser writes "Wake me at 11.30 a.m.": `"hour": 11, "minute": 30`),
a word of the user's that is one of the value's few choices (an enum's "bathroom"), or a
name the user said. Guesses of what followed in the user's words start at two tokens and
grow while they hold. A guess that holds whole is followed in the same batch by the text the
rules force after it and the next guess, so a call's name, keys and numbers can be checked
in one evaluation; rows the rules force are fed without logits (the model does not choose
there, and the vocabulary's projection is most of a row's cost).

The model object is llama-cpp-python's `Llama`; its KV cache and token record are kept
consistent, so a later `create_completion` reuses the shared prefix as usual.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np

from speechllm.llm.base import GenerationOptions

if TYPE_CHECKING:  # an optional dependency
    from llama_cpp import Llama

GUESS_TOKENS = 6  # the longest guess: a wrong one costs nearly a step
CHAIN_TOKENS = 32  # the longest draft of guesses joined by the forced text between them
LOOKUP_KEY = 3  # shortest end of the written text looked up in the user's words


class Rules(Protocol):
    """What may be written (speechllm.llm.guided.Grammar: a grammar)."""

    def forced(self) -> list[int]:
        """Tokens that must come next, taken as consumed (fed without sampling)."""

    def forced_text(self) -> bytes:
        """Bytes that must come next whose tokens are still open (a guess)."""

    def allowed(self, n_vocab: int) -> np.ndarray | None:
        """The tokens allowed next (None: all)."""

    def written_as(self, token: int) -> int:
        """The token written for the chosen one: itself, or one the rules write for it."""

    def take(self, token: int) -> bool:
        """Record the chosen token; False where it cannot be taken."""

    def valid(self, tokens: list[int]) -> int:
        """How many of `tokens` could be taken in turn from here."""

    def after(self, tokens: list[int]) -> tuple[list[int], bytes]:
        """What `forced` and then `forced_text` would give once `tokens` are taken (none
        is: the state is left as it was)."""

    def done(self) -> bool:
        """Nothing more may be written."""


def decode(llm: Llama, prompt: str, rules: Rules, options: GenerationOptions, max_tokens: int,
           lookup: str = "", guess_tokens: int = GUESS_TOKENS) -> Iterator[str]:
    """Text that continues `prompt` under `rules`, as it is decoded; stops where the rules
    end or after `max_tokens` chosen tokens. `guess_tokens` 0: one token a step."""
    pending = reuse_prefix(llm, llm.tokenize(prompt.encode(), special=True))
    n_vocab = llm.n_vocab()
    rng = np.random.default_rng(options.seed)
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    written, chosen = "", 0
    reach = min(2, guess_tokens)  # a guess from the user's words starts short (see _guess)
    while chosen < max_tokens:
        forced = rules.forced()
        if forced:  # fed with the next evaluation, in one batch
            pending += forced
            if piece := text.decode(llm.detokenize(forced)):
                written += piece
                yield piece
        if rules.done():
            break
        room = min(guess_tokens, max_tokens - chosen - 1)
        draft, fixed, looked_up = _guess(llm, rules, written, lookup, room, reach,
                                         max_tokens - chosen - 1) \
            if room > 0 else ([], [], False)
        # the logits after each token but the last before a forced one (the rules choose it)
        rows = _evaluate(llm, pending + draft, [not f for f in fixed] + [True], n_vocab)
        token, kept = -1, 0
        for j, logits in enumerate(rows):
            guess = draft[j] if j < len(draft) else None
            if logits is None:  # text the rules force there: fed, not chosen
                token = draft[j]
            else:
                allowed = rules.allowed(n_vocab)
                if allowed is not None:
                    logits[~allowed] = -np.inf
                token = rules.written_as(choose(logits, guess, options, rng))
                chosen += 1
            if not rules.take(token):  # the model holds what it was fed, minus wrong guesses
                _forget(llm, len(draft) - kept)
                return
            if piece := text.decode(llm.detokenize([token])):
                written += piece
                yield piece
            if token != guess or rules.done():
                break
            kept += 1
        # the model holds pending + draft; the guesses after the kept ones are unwritten
        _forget(llm, len(draft) - kept)
        if looked_up:  # guess further after a guess that held, less after one that did not
            reach = min(guess_tokens, 2 * reach) if kept == len(draft) else max(1, reach // 2)
        if rules.done():
            break
        pending = [token]  # not yet fed: a kept guess ends the loop only where rules end


def _guess(llm: Llama, rules: Rules, written: str, lookup: str, room: int, reach: int,
           budget: int) -> tuple[list[int], list[bool], bool]:
    """Bytes the rules force, else what followed the end of `written` in `lookup` (at most
    `reach` tokens: a guess that often fails must stay short to pay); cut to what the rules
    allow; `room` tokens a guess, `budget` in all. A forced guess that holds whole is
    followed by what the rules force after it, and by the next such guess (`"name":
    "set_timer` then `", "arguments": {"minutes": ` then `12`): one evaluation checks them
    all, where each would cost a step. The tokens, which of them the rules force (fed, not
    checked), and whether the guess was looked up."""
    forced = rules.forced_text()
    looked_up, draft, fixed = False, list[int](), list[bool]()
    while True:
        # where a value may start (the space after a key is forced as bytes or as a token):
        # the next number the user said
        value = b""
        if forced.endswith(b" ") or (not forced and written.endswith('": ')):
            value = next_number(written, lookup).encode()
        elif (written + forced.decode("utf-8", "replace")).endswith('": "'):
            value = said_choice(llm, rules, draft, forced, lookup) \
                or said_name(written, lookup).encode()
        if not forced and not value and not draft:
            looked_up = True
            forced = continuation(written, lookup).encode()
        if not forced and not value:
            break
        # a value tokenized on its own, as the model writes it after the quote (` "today`
        # is one token pair as text, another as JSON)
        whole = [*llm.tokenize(forced, add_bos=False, special=False),
                 *llm.tokenize(value, add_bos=False, special=False)]
        tokens = whole[:min(room, reach, budget) if looked_up else min(room, budget)]
        held = rules.valid(draft + tokens) - len(draft)
        draft += tokens[:held]
        fixed += [False] * held
        budget -= held
        if looked_up or held < len(whole) or budget <= 0 or len(draft) >= CHAIN_TOKENS:
            break
        then, forced = rules.after(draft)
        draft += then
        fixed += [True] * len(then)
        written += llm.detokenize(whole + then).decode("utf-8", "replace")
        if not then and not forced and _value_ended(written) \
                and rules.valid([*draft, *llm.tokenize(b",", add_bos=False)]) > len(draft):
            forced = b","  # where a value ends and more may follow, the model mostly goes on
    return draft, fixed, looked_up


def _value_ended(written: str) -> bool:
    return written[-1:].isdigit() or (written.endswith('"') and not written.endswith('": "'))


def said_choice(llm: Llama, rules: Rules, draft: list[int], head: bytes, lookup: str) -> bytes:
    """Where a string value starts (after `draft` and `head`), a word the user said that the
    rules take there and after which they force the value's end: one of a value's few
    choices (an enum's "bathroom", "Fahrenheit" as "fahrenheit"; not "to" for "todo": a
    word that only begins a choice is often another word); else b""."""
    words = re.findall(r"[^\W_]+", lookup)
    before = [*draft, *llm.tokenize(head, add_bos=False, special=False)]
    for word in dict.fromkeys([*words, *(w.lower() for w in words)]):
        tokens = [*before, *llm.tokenize(word.encode(), add_bos=False, special=False)]
        if rules.valid(tokens) < len(tokens):
            continue
        then, text = rules.after(tokens)
        if (llm.detokenize(then) + text).startswith(b'"'):
            return word.encode()
    return b""


def said_name(written: str, lookup: str) -> str:
    """The first name the user said that `written` does not hold yet: a capitalised word
    that does not begin a sentence ("London", "Emma"; not "I"), the likeliest start of a
    free value (a city, a contact); else "". A wrong guess costs a few rows, not a step."""
    for m in re.finditer(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+\b", lookup.strip()):
        if m[0] not in written:
            return m[0]
    return ""


def continuation(written: str, lookup: str) -> str:
    """What followed the longest end of `written` (with at least LOOKUP_KEY letters or
    digits) at its last place in `lookup`, case aside (a model may write "sydney"
    for "Sydney", "The capital" for "the capital")."""
    folded = lookup.casefold()
    if len(folded) != len(lookup):  # a letter that folds to two ("ß"): places would shift
        folded = lookup
    for n in range(min(len(written), 48), LOOKUP_KEY - 1, -1):
        key = written[-n:]
        if sum(c.isalnum() for c in key) < LOOKUP_KEY:
            break
        at = folded.rfind(key.casefold())
        if at >= 0:
            return lookup[at + n: at + n + 64]
    # a value's first letters, too few to look up anywhere: the rest of the first word of
    # the user's that begins with them ("la" -> "undry", for "laundry")
    start = re.search(rf'"([^\W_]{{1,{LOOKUP_KEY - 1}}})$', written)
    if start:
        word = re.search(r"\b" + re.escape(start[1].casefold()), folded)
        if word:
            return lookup[word.end(): word.end() + 64]
    return ""


def next_number(written: str, lookup: str) -> str:
    """The first number in `lookup` after as many as `written` holds ("11" then "30" for
    "Wake me at 11.30": an alarm's hour, then its minute), or ""."""
    said = re.findall(r"\d+", lookup)
    used = len(re.findall(r"\d+", written))
    return said[used] if used < len(said) else ""


def reuse_prefix(llm: Llama, tokens: list[int]) -> list[int]:
    """Keep the KV cache of the longest prefix `tokens` share with what the model has seen
    (at least one token is left to evaluate, for fresh logits); the tokens still to feed."""
    shared = 0
    for seen, new in zip(llm._input_ids, tokens, strict=False):
        if seen != new:
            break
        shared += 1
    shared = min(shared, len(tokens) - 1)
    llm._ctx.kv_cache_seq_rm(-1, shared, -1)
    llm.n_tokens = shared
    return list(tokens[shared:])


def _evaluate(llm: Llama, tokens: list[int], wanted: list[bool], n_vocab: int
              ) -> list[np.ndarray | None]:
    """Feed `tokens` after what the model holds; the logits after each of the last
    `len(wanted)` of them where wanted, else None (one evaluation when they fit a batch, as a
    step's tokens do; rows not wanted skip the vocabulary's projection, ~7 ms each here)."""
    rows = len(wanted)
    head, tail = tokens[:-rows], tokens[-rows:]
    while len(head) + len(tail) > llm.n_batch:  # a long prompt's remainder first
        llm.eval(head[: llm.n_batch])
        head = head[llm.n_batch:]
    batch = head + tail
    n_past = llm.n_tokens
    llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
    llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=False)
    for i, want in enumerate(wanted):
        llm._batch.batch.logits[len(head) + i] = want
    llm._ctx.decode(llm._batch)
    llm.input_ids[n_past: n_past + len(batch)] = batch
    llm.n_tokens = n_past + len(batch)
    out = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(sum(wanted), n_vocab))
    it = iter(out)
    return [next(it).copy() if want else None for want in wanted]


def _forget(llm: Llama, n: int) -> None:
    """Drop the last `n` tokens the model was fed (guesses it did not make)."""
    if n > 0:
        llm.n_tokens -= n
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)


def choose(logits: np.ndarray, guess: int | None, options: GenerationOptions,
           rng: np.random.Generator) -> int:
    """The next token; with a guess, by the speculative-sampling rule for a guess made
    without a model: keep it with its probability, else draw from the rest, which gives
    exactly the distribution of drawing without a guess."""
    if options.temperature <= 0:
        return int(np.argmax(logits))
    z = (logits - logits.max()) / options.temperature
    p = np.exp(z)
    p /= p.sum()
    order = np.argsort(-p)
    keep = order[: int(np.searchsorted(np.cumsum(p[order]), options.top_p)) + 1]
    q = np.zeros_like(p)
    q[keep] = p[keep] / p[keep].sum()
    if guess is not None:
        if rng.random() < q[guess]:
            return guess
        q[guess] = 0.0
        if q.sum() <= 0:
            return guess
        q /= q.sum()
    return int(rng.choice(len(q), p=q))
