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
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from speechllm._optional import require
from speechllm.llm import speculative
from speechllm.llm.base import GenerationOptions
from speechllm.tools import Tool

if TYPE_CHECKING:  # optional dependencies
    from llama_cpp import Llama
    from llguidance import LLMatcher, LLTokenizer

# How Qwen and most chat models write JSON; the grammar allows no other spacing, so the
# forced parts tokenize as the model would write them.
SEPARATORS = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}
NAME_HEAD = '{"name": "'
ARGUMENTS_HEAD = '", "arguments": '

_tokenizers: dict[int, LLTokenizer] = {}
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


def check_grammar(grammar: str, llm: Llama) -> str | None:
    """What llguidance finds wrong with `grammar` (a schema feature it does not know), or
    None."""
    matcher = matcher_of(grammar, llm)
    return matcher.get_error() if matcher.is_error() else None


def matcher_of(grammar: str, llm: Llama) -> LLMatcher:
    """llguidance's matcher of `grammar` over `llm`'s vocabulary, at its start."""
    llguidance = require("llguidance", "llm")
    return llguidance.LLMatcher(tokenizer_of(llm),
                                llguidance.LLMatcher.grammar_from_lark(grammar))


def tokenizer_of(llm: Llama) -> LLTokenizer:
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

    def __init__(self, matcher: LLMatcher, name: str = "") -> None:
        self._m = matcher
        self._name = name.encode()  # guessed after the name's opening quote, once

    def forced(self) -> list[int]:
        tokens: list[int] = self._m.compute_ff_tokens()
        if tokens:
            self._m.consume_tokens(tokens)
        return tokens

    def forced_text(self) -> bytes:
        forced: bytes = self._m.compute_ff_bytes()
        return self._with_name(forced)

    def _with_name(self, forced: bytes) -> bytes:
        if self._name:  # asked first where the name begins: after its opening quote
            if forced.endswith(b'"'):
                forced += self._name
            self._name = b""
        return forced

    def allowed(self, n_vocab: int) -> np.ndarray:
        return np.unpackbits(np.frombuffer(self._m.compute_bitmask(), np.uint8),
                             bitorder="little")[:n_vocab].astype(bool)

    def written_as(self, token: int) -> int:
        return token

    def take(self, token: int) -> bool:
        self._name = b""
        return bool(self._m.consume_token(token))

    def valid(self, tokens: list[int]) -> int:
        return int(self._m.validate_tokens(tokens))

    def done(self) -> bool:
        return bool(self._m.is_stopped())

    def after(self, tokens: list[int]) -> tuple[list[int], bytes]:
        if tokens and not self._m.consume_tokens(tokens):
            return [], b""
        then: list[int] = self._m.compute_ff_tokens()
        taken = len(tokens)
        if then and self._m.consume_tokens(then):
            taken += len(then)
        text: bytes = self._m.compute_ff_bytes()
        if taken:
            self._m.rollback(taken)
        return then, text if tokens else self._with_name(text)


class CallOrText:
    """speculative.Rules for a reply that may be a call: the first token is the model's free
    choice. Where it opens a call (`opens`: `<tool_call>`, or `{` as small models often
    begin one), the call is written as `open_tokens` and then `grammar`, as if the model
    had chosen `open_tokens[0]`; anything else ends decoding, kept in `first` (the reply is
    text, or not yet clear: its writer goes on from there). The opening is the first guess,
    so a call's first tokens are checked in the same evaluation as the prompt's last ones."""

    def __init__(self, grammar: Grammar, open_tokens: list[int], opening: bytes,
                 opens: Callable[[int], bool]) -> None:
        self._g, self._open, self._at = grammar, open_tokens, 0
        self._opening = opening  # open's first token as text: the first guess
        self._opens = opens
        self.first: int | None = None  # the token a text reply begins with

    def written_as(self, token: int) -> int:
        return self._open[0] if self._at == 0 and self._opens(token) else token

    def _split(self, tokens: list[int]) -> tuple[list[int], list[int], bool]:
        """`tokens` as the part of `open` still to come, the grammar's part, and whether the
        first part matches."""
        rest = self._open[self._at:]
        head, tail = tokens[:len(rest)], tokens[len(rest):]
        return head, tail, head == rest[:len(head)]

    def forced(self) -> list[int]:
        if self._at == 0:
            return []
        rest, self._at = self._open[self._at:], len(self._open)
        return rest + self._g.forced()

    def forced_text(self) -> bytes:
        if self._at == 0:
            return self._opening
        return self._g.forced_text() if self._at == len(self._open) else b""

    def allowed(self, n_vocab: int) -> np.ndarray | None:
        if self._at == 0:
            return None
        if self._at < len(self._open):
            only = np.zeros(n_vocab, bool)
            only[self._open[self._at]] = True
            return only
        return self._g.allowed(n_vocab)

    def take(self, token: int) -> bool:
        if self._at < len(self._open):
            if token != self._open[self._at]:
                if self._at == 0:
                    self.first = token
                return False
            self._at += 1
            return True
        return self._g.take(token)

    def valid(self, tokens: list[int]) -> int:
        head, tail, same = self._split(tokens)
        if not same:
            return next(i for i, (a, b) in enumerate(zip(head, self._open[self._at:],
                                                         strict=False)) if a != b)
        return len(head) + (self._g.valid(tail) if tail else 0)

    def after(self, tokens: list[int]) -> tuple[list[int], bytes]:
        head, tail, same = self._split(tokens)
        if not same:
            return [], b""
        if len(head) < len(self._open) - self._at:
            then, text = self._g.after([])
            return self._open[self._at + len(head):] + then, text
        return self._g.after(tail)

    def done(self) -> bool:
        return self._at == len(self._open) and self._g.done()


def likely_tool(tools: Sequence[Tool], heard: str) -> str:
    """The tool whose name has the most words the user said ("set a timer": `set_timer`;
    "to" in `add_to_list` does not count), then, among equals, whose description has the
    most ("set the heating": `set_thermostat`, "Set the heating's target temperature"), or
    "" when no name has any: the guess for a call's name."""
    said = set(re.findall(r"[a-z]+", heard.lower()))
    best, name = (0, 0), ""
    for tool in tools:
        score = (sum(word in said for word in tool.name.lower().split("_") if len(word) > 2),
                 sum(word in said for word in set(re.findall(r"[a-z]{4,}",
                                                             tool.description.lower()))))
        if score[0] and score > best:
            best, name = score, tool.name
    return name


def guided(llm: Llama, prompt: str, grammar: str, options: GenerationOptions,
           max_tokens: int, lookup: str = "",
           guess_tokens: int = speculative.GUESS_TOKENS, name: str = "") -> Iterator[str]:
    """Text that continues `prompt` under `grammar`, as it is decoded; stops where the
    grammar ends or after `max_tokens` sampled tokens. Speculative (speechllm.llm.
    speculative): the guesses are text the grammar forces but whose tokens it leaves open
    (` "` before a value: ` "S` could start there too), `name` after the call's first quote
    (tools that share a first word, `set_timer` and `set_alarm`, cost a step more to tell
    apart), numbers and runs of the user's words (`lookup`)."""
    matcher = matcher_of(grammar, llm)
    if matcher.is_error():
        raise ValueError(matcher.get_error())
    yield from speculative.decode(llm, prompt, Grammar(matcher, name), options, max_tokens,
                                  lookup, guess_tokens)
