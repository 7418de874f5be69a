"""Schema-guided decoding of tool calls on a llama.cpp model, with llguidance.

A call is written as `{"name": "<tool>", "arguments": {...}}`: one grammar holds every
offered tool, each name followed by its own argument schema. Two things make it fast where
llama.cpp's GBNF sampler was slow (about 55 ms a token against 38 free, measured in
docs/tools.md):
- the token mask comes from llguidance (tens of microseconds over a 151k vocabulary), and
- text the grammar forces (`{"name": "`, `", "arguments": {"city": "`) is not sampled token by
  token: it is fed to the model in one batch, as a prompt is.

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
           max_tokens: int) -> Iterator[str]:
    """Text that continues `prompt` under `grammar`, as it is decoded; stops where the
    grammar ends or after `max_tokens` sampled tokens."""
    llguidance = require("llguidance", "llm")
    tokenizer = tokenizer_of(llm)
    matcher = llguidance.LLMatcher(tokenizer, llguidance.LLMatcher.grammar_from_lark(grammar))
    if matcher.is_error():
        raise ValueError(matcher.get_error())
    pending = _reuse_prefix(llm, llm.tokenize(prompt.encode(), special=True))
    n_vocab = llm.n_vocab()
    rng = np.random.default_rng(options.seed)
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for _ in range(max_tokens):
        forced = matcher.compute_ff_tokens()
        if forced:  # fed with the next evaluation, in one batch
            matcher.consume_tokens(forced)
            pending += forced
            if piece := text.decode(tokenizer.decode_bytes(forced)):
                yield piece
        if matcher.is_stopped():
            break
        llm.eval(pending)
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).copy()
        allowed = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), np.uint8),
                                bitorder="little")[:n_vocab].astype(bool)
        logits[~allowed] = -np.inf
        token = _sample(logits, options, rng)
        if not matcher.consume_token(token):
            break
        if piece := text.decode(tokenizer.decode_bytes([token])):
            yield piece
        if matcher.is_stopped():
            break
        pending = [token]


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


def _sample(logits: np.ndarray, options: GenerationOptions, rng: np.random.Generator) -> int:
    if options.temperature <= 0:
        return int(np.argmax(logits))
    z = (logits - logits.max()) / options.temperature
    p = np.exp(z)
    p /= p.sum()
    order = np.argsort(-p)
    keep = order[: int(np.searchsorted(np.cumsum(p[order]), options.top_p)) + 1]
    return int(rng.choice(keep, p=p[keep] / p[keep].sum()))
