"""Schema-guided decoding of tool calls on a llama.cpp model, with llguidance.

A call is written as `{"name": "<tool>", "arguments": {...}}`: one grammar holds every
offered tool, each name followed by its own argument schema. Three things make it fast where
llama.cpp's GBNF sampler was slow (about 55 ms a token against 38 free, measured in
docs/tools.md):
- the token mask comes from llguidance (tens of microseconds over a 151k vocabulary);
- text the grammar forces (`{"name": "`, `", "arguments": {"city": "`) is not sampled token by
  token: it is fed to the model in one batch, as a prompt is;
- each step is speculative (speechllm.llm.speculative): a few guessed tokens ride along in
  the batch and the ones the model agrees with are kept.

The model object is llama-cpp-python's `Llama`; its KV cache and token record are kept
consistent, so a later `create_completion` reuses the shared prefix as usual.
"""

from __future__ import annotations

import json
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from speechllm._optional import require
from speechllm.llm import speculative
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


class Grammar:
    """speculative.Rules for a grammar, through llguidance's matcher."""

    def __init__(self, matcher: Any, name: str = "") -> None:
        self._m = matcher
        self._name = name.encode()  # guessed after the name's opening quote, once

    def forced(self) -> list[int]:
        tokens: list[int] = self._m.compute_ff_tokens()
        if tokens:
            self._m.consume_tokens(tokens)
        return tokens

    def forced_text(self) -> bytes:
        forced: bytes = self._m.compute_ff_bytes()
        if self._name:  # asked first where the name begins: after its opening quote
            if forced.endswith(b'"'):
                forced += self._name
            self._name = b""
        return forced

    def allowed(self, n_vocab: int) -> np.ndarray:
        return np.unpackbits(np.frombuffer(self._m.compute_bitmask(), np.uint8),
                             bitorder="little")[:n_vocab].astype(bool)

    def take(self, token: int) -> bool:
        return bool(self._m.consume_token(token))

    def valid(self, tokens: list[int]) -> int:
        return int(self._m.validate_tokens(tokens))

    def done(self) -> bool:
        return bool(self._m.is_stopped())


def likely_tool(tools: Sequence[Tool], heard: str) -> str:
    """The tool whose name has the most words the user said ("set a timer": `set_timer`;
    first of equals; "to" in `add_to_list` does not count), or "" when none has any: the
    guess for a call's name."""
    said = set(re.findall(r"[a-z]+", heard.lower()))
    best, name = 0, ""
    for tool in tools:
        score = sum(word in said for word in tool.name.lower().split("_") if len(word) > 2)
        if score > best:
            best, name = score, tool.name
    return name


def guided(llm: Any, prompt: str, grammar: str, options: GenerationOptions,
           max_tokens: int, lookup: str = "",
           guess_tokens: int = speculative.GUESS_TOKENS, name: str = "") -> Iterator[str]:
    """Text that continues `prompt` under `grammar`, as it is decoded; stops where the
    grammar ends or after `max_tokens` sampled tokens. Speculative (speechllm.llm.
    speculative): the guesses are text the grammar forces but whose tokens it leaves open
    (` "` before a value: ` "S` could start there too), `name` after the call's first quote
    (tools that share a first word, `set_timer` and `set_alarm`, cost a step more to tell
    apart), numbers and runs of the user's words (`lookup`)."""
    llguidance = require("llguidance", "llm")
    matcher = llguidance.LLMatcher(tokenizer_of(llm),
                                   llguidance.LLMatcher.grammar_from_lark(grammar))
    if matcher.is_error():
        raise ValueError(matcher.get_error())
    yield from speculative.decode(llm, prompt, Grammar(matcher, name), options, max_tokens,
                                  lookup, guess_tokens)
