"""Schema-guided decoding of tool calls on a llama.cpp model, with llguidance.

A call is written as `{"name": "<tool>", "arguments": {...}}`: one grammar holds every
offered tool, each name followed by its own argument schema. Three things make it fast where
llama.cpp's GBNF sampler was slow (about 55 ms a token against 38 free, measured in
docs/tools.md):
- the token mask comes from llguidance (tens of microseconds over a 151k vocabulary);
- text the grammar forces (`{"name": "`, `", "arguments": {"city": "`) is not sampled token by
  token: it is fed to the model in one batch, as a prompt is;
- each step is speculative (`guided`): a few guessed tokens ride along in the batch and the
  ones the model agrees with are kept. On 2 cores a batch costs about 33 ms plus 6 ms a
  token, so a kept guess costs a sixth of a step.

The model object is llama-cpp-python's `Llama`; its KV cache and token record are kept
consistent, so a later `create_completion` reuses the shared prefix as usual.
"""

from __future__ import annotations

import codecs
import json
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from speechllm._optional import require
from speechllm.llm.base import GenerationOptions
from speechllm.tools import Tool

# How Qwen and most chat models write JSON; the grammar allows no other spacing, so the
# forced parts tokenize as the model would write them.
SEPARATORS = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}
NAME_HEAD = '{"name": "'
ARGUMENTS_HEAD = '", "arguments": '
# A guess costs about 6 ms a token in the batch against about 39 ms a step on 2 cores, so a
# few tokens, mostly right, pay; a long wrong one costs nearly a step.
DRAFT_TOKENS = 6
LOOKUP_KEY = 2  # shortest end of the call's text looked up in the user's words

_tokenizers: dict[int, Any] = {}
_tokenizers_lock = threading.Lock()


def call_grammar(tools: Sequence[Tool]) -> str:
    """A Lark grammar (llguidance's dialect) for one call of any of `tools`."""
    alternatives, rules = [], []
    for i, tool in enumerate(tools):
        schema = {**dict(tool.parameters), "additionalProperties": False,
                  "x-guidance": SEPARATORS}
        rules.append(f"arguments{i}: %json {json.dumps(schema)}")
        alternatives.append(f"{_literal(tool.name + ARGUMENTS_HEAD)} arguments{i}")
    start = f"start: {_literal(NAME_HEAD)} ({' | '.join(alternatives)}) \"}}\""
    return "\n".join([start, *rules])


def _literal(text: str) -> str:
    return json.dumps(text)  # a Lark string literal has JSON's escapes


def check_grammar(grammar: str, llm: Any) -> str | None:
    """What llguidance finds wrong with `grammar` (a schema feature it does not know), or
    None."""
    llguidance = require("llguidance", "llm")
    matcher = llguidance.LLMatcher(tokenizer_of(llm),
                                   llguidance.LLMatcher.grammar_from_lark(grammar))
    return matcher.get_error() if matcher.is_error() else None


def tokenizer_of(llm: Any) -> Any:
    """llguidance's view of a llama.cpp model's vocabulary (built once per model: ~0.7 s)."""
    with _tokenizers_lock:
        key = id(llm.model)
        if key not in _tokenizers:
            llama_cpp = require("llama_cpp", "llm")
            from llguidance.llamacpp import lltokenizer_from_vocab

            with warnings.catch_warnings():  # it reads each token's kind with a call
                # llama-cpp-python deprecates, warning 150k times
                warnings.simplefilter("ignore", DeprecationWarning)
                _tokenizers[key] = lltokenizer_from_vocab(
                    llama_cpp.llama_model_get_vocab(llm.model))
        return _tokenizers[key]


def guided(llm: Any, prompt: str, grammar: str, options: GenerationOptions,
           max_tokens: int, lookup: str = "") -> Iterator[str]:
    """Text that continues `prompt` under `grammar`, as it is decoded; stops where the
    grammar ends or after `max_tokens` sampled tokens.

    Decoding is speculative: each step also feeds a short guess of the next tokens (text the
    grammar forces but whose tokens it leaves open, such as ` "` before a value, or what
    followed the call's text so far in `lookup`, the user's words: a value is often copied
    from them) and keeps the guessed tokens the model itself would have chosen, checked
    against its logits at each position. The output is what token-by-token decoding gives
    (greedy: the same argmax; sampling: the same distribution, by the speculative-sampling
    acceptance rule), at one model evaluation for several tokens."""
    llguidance = require("llguidance", "llm")
    tokenizer = tokenizer_of(llm)
    matcher = llguidance.LLMatcher(tokenizer, llguidance.LLMatcher.grammar_from_lark(grammar))
    if matcher.is_error():
        raise ValueError(matcher.get_error())
    pending = _reuse_prefix(llm, llm.tokenize(prompt.encode(), special=True))
    n_vocab = llm.n_vocab()
    rng = np.random.default_rng(options.seed)
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    written, sampled = "", 0
    while sampled < max_tokens:
        forced = matcher.compute_ff_tokens()
        if forced:  # fed with the next evaluation, in one batch
            matcher.consume_tokens(forced)
            pending += forced
            if piece := text.decode(tokenizer.decode_bytes(forced)):
                written += piece
                yield piece
        if matcher.is_stopped():
            break
        draft = _draft(llm, matcher, written, lookup)[: max_tokens - sampled - 1]
        rows = _evaluate(llm, pending + draft, len(draft) + 1, n_vocab)
        token, kept = -1, 0
        for j, logits in enumerate(rows):
            allowed = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), np.uint8),
                                    bitorder="little")[:n_vocab].astype(bool)
            logits[~allowed] = -np.inf
            guess = draft[j] if j < len(draft) else None
            token = _choose(logits, guess, options, rng)
            sampled += 1
            if not matcher.consume_token(token):
                return
            if piece := text.decode(tokenizer.decode_bytes([token])):
                written += piece
                yield piece
            if token != guess or matcher.is_stopped():
                break
            kept += 1
        # the model holds pending + draft; the guesses after the kept ones are unwritten
        _forget(llm, len(draft) - kept)
        if matcher.is_stopped():
            break
        pending = [token]  # a kept guess ends the loop only where the grammar stops


def _draft(llm: Any, matcher: Any, written: str, lookup: str) -> list[int]:
    """A guess at the next tokens: bytes the grammar forces, else what followed the end of
    `written` in `lookup`; [] when there is none."""
    guess = matcher.compute_ff_bytes() or _continuation(written, lookup).encode()
    if not guess:
        return []
    tokens = llm.tokenize(guess, add_bos=False, special=False)[:DRAFT_TOKENS]
    return list(tokens[: matcher.validate_tokens(tokens)])


def _continuation(written: str, lookup: str) -> str:
    """What followed the longest end of `written` (at least LOOKUP_KEY characters, with a
    letter or digit) at its last place in `lookup`, case aside (a model may write "sydney"
    for "Sydney")."""
    folded = lookup.casefold()
    if len(folded) != len(lookup):  # a letter that folds to two ("ß"): places would shift
        folded = lookup
    for n in range(min(len(written), 48), LOOKUP_KEY - 1, -1):
        key = written[-n:]
        if not any(c.isalnum() for c in key):
            break
        at = folded.rfind(key.casefold())
        if at >= 0:
            return lookup[at + n: at + n + 64]
    return ""


def _evaluate(llm: Any, tokens: list[int], rows: int, n_vocab: int) -> list[np.ndarray]:
    """Feed `tokens` after what the model holds; the logits after each of the last `rows`
    of them (one evaluation when they fit a batch, as a step's tokens do)."""
    head, tail = tokens[:-rows], tokens[-rows:]
    while len(head) + len(tail) > llm.n_batch:  # a long prompt's remainder first
        llm.eval(head[: llm.n_batch])
        head = head[llm.n_batch:]
    batch = head + tail
    n_past = llm.n_tokens
    llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
    llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=False)
    for i in range(len(head), len(batch)):
        llm._batch.batch.logits[i] = True
    llm._ctx.decode(llm._batch)
    llm.input_ids[n_past: n_past + len(batch)] = batch
    llm.n_tokens = n_past + len(batch)
    out = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(rows, n_vocab))
    return [row.copy() for row in out]


def _forget(llm: Any, n: int) -> None:
    """Drop the last `n` tokens the model was fed (guesses it did not make)."""
    if n > 0:
        llm.n_tokens -= n
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)


def _reuse_prefix(llm: Any, tokens: list[int]) -> list[int]:
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


def _choose(logits: np.ndarray, guess: int | None, options: GenerationOptions,
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
