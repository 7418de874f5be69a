"""GGUF language models through llama-cpp-python: streamed chat and log-likelihood scoring."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechllm import models
from speechllm._optional import require
from speechllm.errors import ModelError
from speechllm.llm import speculative
from speechllm.llm.base import GenerationOptions, ToolSet, openai_messages
from speechllm.llm.guided import (
    ARGUMENTS_HEAD,
    NAME_HEAD,
    CallOrText,
    Grammar,
    call_grammar,
    check_grammar,
    guided,
    likely_tool,
    matcher_of,
)
from speechllm.speechlm import Message, Usage
from speechllm.tools import (
    Tool,
    ToolCall,
    ToolCallDelta,
    UseTool,
    check_call,
    check_written_calls,
    may_start_call,
    new_call_id,
    starts_call,
)

log = logging.getLogger("speechllm.llm")
CALL_OPEN = "<tool_call>\n"  # how Qwen2.5 (Hermes-style templates) begin a call


@dataclass(frozen=True)
class LlamaConfig:
    n_ctx: int = 4096  # context window in tokens
    n_threads: int = 0  # 0: one per core
    n_batch: int = 512
    # Reuse the KV cache of the longest prompt prefix shared with the previous call (system
    # prompt, earlier turns): faster turns, but greedy output may then differ in the last bits
    # from a cold start. False resets the cache each call for bit-reproducible runs.
    prefix_cache: bool = True
    # Tokens guessed a step (speechllm.llm.speculative) in tool calls: the same call in
    # fewer model evaluations. 0: one token a step. (Text answers are not guessed: on 60
    # questions it saved 16 ms to the first four words, docs/tools.md.)
    guess_tokens: int = 6

    def __post_init__(self) -> None:
        if not 0 <= self.guess_tokens <= 32:
            raise ValueError(f"guess_tokens must be 0-32, got {self.guess_tokens}")


def _load(model: str | os.PathLike[str], role: str, config: LlamaConfig,
          logits_all: bool = False) -> tuple[Any, Path]:
    llama_cpp = require("llama_cpp", "llm")
    path = models.resolve(model, role)
    if not Path(path).is_file():
        raise ModelError(f"{path} is not a GGUF file")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelError(f"{path} is not a GGUF file (bad magic bytes)")
    # llama.cpp prints its own failure to stderr; keep the user's terminal to our one line.
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=config.n_ctx, n_batch=config.n_batch,
                n_threads=config.n_threads or (os.cpu_count() or 1), logits_all=logits_all,
                verbose=False,
            )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelError(f"cannot load GGUF model {path}: {exc}") from None
    return llm, Path(path)


class LlamaCppChat:
    """A chat model; `model` is an embedded name ("qwen2.5-0.5b-instruct") or any GGUF path.
    The prompt format comes from the chat template stored in the GGUF file."""

    def __init__(self, model: str | os.PathLike[str] = "qwen2.5-0.5b-instruct",
                 config: LlamaConfig | None = None) -> None:
        self.config = config or LlamaConfig()
        self._llm, path = _load(model, "chat", self.config)
        self.name = str(model) if str(model) in models.REGISTRY else path.stem
        self._lock = threading.Lock()  # a llama.cpp context serves one generation at a time
        self._format: Any = None  # the chat template, for tool calling (built on first use)
        self._eos = ""
        self._grammars: dict[str, str | None] = {}  # tool set -> its calls' grammar

    def stream_chat(self, messages: Sequence[Message],
                    options: GenerationOptions | None = None) -> Iterator[str]:
        o = options or GenerationOptions()
        with self._lock:
            if not self.config.prefix_cache:
                self._llm.reset()
            chunks = self._llm.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                stream=True, max_tokens=o.max_tokens, temperature=o.temperature, top_p=o.top_p,
                stop=list(o.stop) or None, seed=o.seed,
            )
            for chunk in chunks:
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece

    # -- tool calling ------------------------------------------------------------------

    def _template(self) -> Any:
        """The GGUF's chat template, as llama-cpp-python renders it (built on first use)."""
        if self._format is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            template = self._llm.metadata.get("tokenizer.chat_template")
            if not template:
                raise ModelError(f"{self.name} has no chat template")
            model = self._llm._model
            self._eos = model.token_get_text(self._llm.token_eos())
            self._format = Jinja2ChatFormatter(template, eos_token=self._eos, bos_token="")
        return self._format

    def _formatter(self) -> Any:
        if "tool" not in self._llm.metadata.get("tokenizer.chat_template", ""):
            raise ModelError(f"{self.name}'s chat template has no tool support; use a "
                             "model whose template renders tools (Qwen2.5, Llama 3.1+)")
        return self._template()

    def usage(self, messages: Sequence[Message], tools: Sequence[Tool], text: str,
              calls: Sequence[ToolCall] = ()) -> Usage | None:
        """Tokens in the prompt these messages (and tools) make, and in the answer: its text
        and calls as the model writes them. None when the GGUF has no chat template."""
        from jinja2 import TemplateError

        try:
            prompt = self._template()(messages=openai_messages(messages, True),
                                      tools=[t.to_openai() for t in tools] or None).prompt
        except (ModelError, TemplateError):  # no template, or one these messages break
            return None
        written = text + "".join(f"{CALL_OPEN}{NAME_HEAD}{c.name}{ARGUMENTS_HEAD}{c.arguments}}}"
                                 for c in calls)
        return Usage(self._count(prompt), self._count(written))

    def _count(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=True)) if text \
            else 0

    def _complete(self, prompt: str | list[int], o: GenerationOptions, max_tokens: int,
                  grammar: Any = None) -> Generator[str, None, None]:
        chunks = self._llm.create_completion(
            prompt, stream=True, max_tokens=max_tokens, temperature=o.temperature,
            top_p=o.top_p, stop=[self._eos, *o.stop], seed=o.seed, grammar=grammar)
        for chunk in chunks:
            if piece := chunk["choices"][0]["text"]:
                yield piece

    def _call_grammar(self, tools: tuple[Tool, ...]) -> str | None:
        """The grammar of one call of `tools`; None (and a warning, once) where llguidance
        cannot follow a schema: such calls are written freely and checked after."""
        key = json.dumps([t.to_openai() for t in tools], sort_keys=True)
        if key not in self._grammars:
            if len(self._grammars) > 256:  # a session reuses its tools; many sessions may not
                self._grammars.clear()
            grammar: str | None = call_grammar(tools)
            problem = check_grammar(grammar, self._llm) if grammar else None
            if problem:
                log.warning("tool schemas outside guided decoding (%s): calls are decoded "
                            "freely and checked", problem[:200])
                grammar = None
            self._grammars[key] = grammar
        return self._grammars[key]

    def stream_tools(self, messages: Sequence[Message], options: GenerationOptions | None,
                     tools: ToolSet) -> Iterator[str | ToolCallDelta | ToolCall]:
        """Text, or one call decoded under a grammar (two steps: the name among the offered
        ones, then arguments under that tool's schema, streamed as they come). "auto" lets
        the model start freely and switches to the grammar once it begins a call."""
        o = options or GenerationOptions()
        offered = [t.to_openai() for t in tools.tools] \
            if tools.choice != "none" and tools.tools else None
        with self._lock:
            if not self.config.prefix_cache:
                self._llm.reset()
            prompt = self._formatter()(messages=openai_messages(messages, True),
                                       tools=offered).prompt
            if tools.choice in ("auto", "none"):
                written, call = "", False
                rules = self._call_or_text(tools, _heard(messages)) \
                    if offered and tools.constrained and o.temperature == 0 else None
                if rules is not None:
                    # a call is guessed where the user said a tool's name: its opening is
                    # checked with the prompt's last tokens, one evaluation sooner
                    events = self._call_events(speculative.decode(
                        self._llm, prompt, rules, o, o.max_tokens, _heard(messages),
                        self.config.guess_tokens), tools, may_be_text=True)
                    if (event := next(events, None)) is not None:
                        yield event
                        yield from events
                        return
                    free = self._text_after(prompt, o, rules.first)
                else:
                    free = self._complete(prompt, o, o.max_tokens)
                for piece in free:
                    written += piece
                    head = written.lstrip()
                    if offered is None or (head and not may_start_call(head)):
                        break
                    if head and starts_call(head):
                        call = True
                        break
                else:  # ended before it was clear: a short (or empty) answer
                    if written.strip():
                        yield written
                    return
                if not call:  # a text answer: what was held back, then the rest as it comes
                    yield written
                    yield from free
                    return
                if not tools.constrained:
                    written += "".join(free)
                    yield from check_written_calls(written, tools.tools, _named(tools))
                    return
                free.close()
            elif not tools.constrained:  # "required" or one named tool, written freely
                written = "".join(self._complete(prompt + CALL_OPEN, o, o.max_tokens))
                yield from check_written_calls(written, tools.tools, _named(tools))
                return
            yield from self._constrained_call(prompt, o, tools, _heard(messages))

    def _call_or_text(self, tools: ToolSet, heard: str) -> CallOrText | None:
        """Rules for a reply that opens with a call of the tool the user named or is text
        (speechllm.llm.guided.CallOrText), or None where no tool's name was said."""
        name = likely_tool(tools.tools, heard)
        grammar = self._call_grammar(tools.tools) if name else None
        if grammar is None:
            return None
        matcher = matcher_of(grammar, self._llm)
        opening = list(self._llm.tokenize(CALL_OPEN.encode(), add_bos=False, special=True))

        def opens(token: int) -> bool:  # as the free path decides from a reply's start
            head = self._llm.detokenize([token]).decode("utf-8", "replace").lstrip()
            return bool(head) and starts_call(head)

        return CallOrText(Grammar(matcher, name), opening, self._llm.detokenize(opening[:1]),
                          opens)

    def _text_after(self, prompt: str, o: GenerationOptions, first: int | None
                    ) -> Generator[str, None, None]:
        """The text reply to `prompt` that begins with the token `first` (chosen with the
        prompt's last evaluation); the usual way where that cannot be continued (none,
        part of a character, the end, a stop string)."""
        try:
            text = self._llm.detokenize([first]).decode("utf-8") if first is not None else ""
        except UnicodeDecodeError:
            first = None
        if first is None or first == self._llm.token_eos() or o.max_tokens <= 1 \
                or any(stop in text for stop in o.stop):
            yield from self._complete(prompt, o, o.max_tokens)
            return
        if text:
            yield text
        tokens = list(self._llm.tokenize(prompt.encode(), special=True))
        yield from self._complete([*tokens, first], o, o.max_tokens - 1)

    def _constrained_call(self, prompt: str, o: GenerationOptions, tools: ToolSet,
                          heard: str) -> Iterator[ToolCallDelta | ToolCall]:
        """One call, decoded under its tools' grammar (speechllm.llm.guided): the name, then
        the arguments streamed as they come; values are guessed from `heard` (the user's
        words) and the guesses checked by the model."""
        named = _named(tools)
        offered = tuple(t for t in tools.tools if named is None or t.name == named)
        grammar = self._call_grammar(offered)
        if grammar is None:
            written = "".join(self._complete(prompt + CALL_OPEN, o, o.max_tokens))
            yield from check_written_calls(written, tools.tools, named)
            return
        yield from self._call_events(
            guided(self._llm, prompt + CALL_OPEN, grammar, o, o.max_tokens, heard,
                   self.config.guess_tokens, likely_tool(offered, heard)), tools)

    def _call_events(self, pieces: Iterator[str], tools: ToolSet, may_be_text: bool = False
                     ) -> Iterator[ToolCallDelta | ToolCall]:
        """A call's events from the text of `{"name": ..., "arguments": ...}` as it is
        decoded (whatever comes before its first brace, a call's opening, is left out).
        Where no text comes: nothing if the reply `may_be_text` (it is), else the error."""
        call_id, name, written, start, sent = new_call_id(), "", "", 0, 0
        for piece in pieces:
            written += piece
            if not name:
                written = written[written.find("{"):] if "{" in written else ""
                at = written.find(ARGUMENTS_HEAD, len(NAME_HEAD))
                if at < 0:
                    continue
                name, start = written[len(NAME_HEAD):at], at + len(ARGUMENTS_HEAD)
                sent = start
                yield ToolCallDelta(0, call_id, name, "")
            end = len(written) - 1  # held back: the call's own closing brace
            if end > sent:
                yield ToolCallDelta(0, call_id, name, written[sent:end])
                sent = end
        if not written and may_be_text:
            return
        complete = bool(name) and written.endswith("}")
        arguments = written[start:len(written) - complete]
        if name and len(written) - complete > sent:
            yield ToolCallDelta(0, call_id, name, written[sent:len(written) - complete])
        yield check_call(name or written, arguments, tools.tools, call_id)


def _heard(messages: Sequence[Message]) -> str:
    """The user's last words: where a call's values are guessed from."""
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


def _named(tools: ToolSet) -> str | None:
    return tools.choice.name if isinstance(tools.choice, UseTool) else None


class LlamaCppScorer:
    """Log-likelihood of text under a GGUF LM (default: the embedded Gemma 3 270M base model).

    Keeps the logits of every position (`logits_all`), so memory grows with n_ctx x vocabulary:
    the default 256-token window costs about 270 MB for Gemma's 262k-token vocabulary.
    """

    def __init__(self, model: str | os.PathLike[str] = "gemma-3-270m",
                 config: LlamaConfig | None = None) -> None:
        cfg = config or LlamaConfig(n_ctx=256, n_batch=256)
        self._llm, path = _load(model, "scoring", cfg, logits_all=True)
        self.name = str(model) if str(model) in models.REGISTRY else path.stem
        self._n_ctx = cfg.n_ctx
        self._lock = threading.Lock()

    def _tokens(self, text: str, bos: bool) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False))

    def loglikelihood(self, text: str, context: str = "") -> float:
        """Sum of log P(token | everything before) over the tokens of `text`."""
        head = self._tokens(context, bos=True)
        body = self._tokens(text, bos=False)
        if not body:
            return 0.0
        tokens = head + body
        if len(tokens) > self._n_ctx:
            raise ValueError(f"{len(tokens)} tokens exceed the scorer's {self._n_ctx}-token window")
        with self._lock:
            self._llm.reset()
            self._llm.eval(tokens)
            logits = np.asarray(self._llm.scores[: len(tokens)], dtype=np.float64)
        # Row i predicts token i+1: score each body token from the row before it.
        rows = logits[len(head) - 1: len(tokens) - 1]
        peak = rows.max(axis=1, keepdims=True)
        logz = np.log(np.exp(rows - peak).sum(axis=1)) + peak[:, 0]
        picked = rows[np.arange(len(body)), body]
        return float((picked - logz).sum())


def llama_cpp_chat(model: str, base_url: str | None = None) -> LlamaCppChat:
    """The registry's factory: `model` an embedded GGUF name or a .gguf path."""
    if base_url:
        raise ValueError("the llama-cpp LLM backend runs in process; base_url is for 'openai'")
    return LlamaCppChat(model)
