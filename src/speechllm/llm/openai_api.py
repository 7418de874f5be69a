"""Any OpenAI-compatible chat server (vLLM, llama.cpp server, llama-cpp-python's server, ...)
as the LLM, through the official `openai` client."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from speechllm._optional import require
from speechllm.errors import ModelError
from speechllm.llm.base import GenerationOptions, ToolSet, openai_messages
from speechllm.speechlm import Message
from speechllm.tools import (
    ToolCall,
    ToolCallDelta,
    UseTool,
    check_call,
    check_written_calls,
    may_start_call,
    starts_call,
)


@dataclass(frozen=True)
class OpenAIConfig:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str  # the server's model name
    api_key: str | None = None  # None reads OPENAI_API_KEY, else sends a placeholder
    timeout: float = 60.0


class OpenAIChat:
    def __init__(self, config: OpenAIConfig) -> None:
        openai = require("openai", "openai")
        self.config = config
        self.name = config.model
        key = config.api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"
        self._client = openai.OpenAI(base_url=config.base_url, api_key=key,
                                     timeout=config.timeout, max_retries=1)
        self._errors = (openai.APIConnectionError, openai.APIStatusError, openai.APITimeoutError)

    def stream_chat(self, messages: Sequence[Message],
                    options: GenerationOptions | None = None) -> Iterator[str]:
        o = options or GenerationOptions()
        try:
            stream = self._client.chat.completions.create(
                model=self.config.model,
                messages=openai_messages(messages),
                stream=True, max_tokens=o.max_tokens, temperature=o.temperature, top_p=o.top_p,
                stop=list(o.stop) or None, seed=o.seed,
            )
            for chunk in stream:
                if chunk.choices and (piece := chunk.choices[0].delta.content):
                    yield piece
        except self._errors as exc:
            raise ModelError(f"LLM server at {self.config.base_url} failed: {exc}") from None

    def stream_tools(self, messages: Sequence[Message], options: GenerationOptions | None,
                     tools: ToolSet) -> Iterator[str | ToolCallDelta | ToolCall]:
        """Tools passed through to the server; its calls are gathered and checked against the
        schemas before they go on (a server's model may slip: no argument pieces pass unchecked)."""
        o = options or GenerationOptions()
        calls: dict[int, dict[str, str]] = {}
        held, text_mode = "", not tools.tools or tools.choice == "none"
        try:
            stream = self._client.chat.completions.create(
                model=self.config.model, messages=openai_messages(messages),
                tools=[t.to_openai() for t in tools.tools] or None,
                tool_choice=_choice(tools) if tools.tools else None,
                stream=True, max_tokens=o.max_tokens, temperature=o.temperature, top_p=o.top_p,
                stop=list(o.stop) or None, seed=o.seed,
            )
            for chunk in stream:
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                if delta.content and text_mode:
                    yield delta.content
                elif delta.content:  # held while it may be a call the server left as text
                    held += delta.content
                    if not may_start_call(held.lstrip()):
                        text_mode = True
                        yield held
                for piece in delta.tool_calls or []:
                    call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
                    call["id"] = piece.id or call["id"]
                    if piece.function is not None:
                        name = piece.function.name or ""
                        if name != call["name"]:  # some servers repeat the name in each piece
                            call["name"] += name
                        call["arguments"] += piece.function.arguments or ""
        except self._errors as exc:
            raise ModelError(f"LLM server at {self.config.base_url} failed: {exc}") from None
        for _, call in sorted(calls.items()):
            yield check_call(call["name"], call["arguments"], tools.tools, call["id"] or None)
        if held and not text_mode and not calls:
            if not starts_call(held.lstrip()):
                yield held  # a short answer that ended while it still looked like a call
                return
            # a server without a tool-call parser (llama.cpp's without --jinja, vLLM without
            # --tool-call-parser) hands the model's call back as text: read it here
            yield from check_written_calls(held, tools.tools)


def _choice(tools: ToolSet) -> Any:
    if isinstance(tools.choice, UseTool):
        return {"type": "function", "function": {"name": tools.choice.name}}
    return tools.choice


def openai_chat(model: str, base_url: str | None = None) -> OpenAIChat:
    """The registry's factory: `model` as the server names it, at `base_url`."""
    if not base_url:
        raise ValueError("the openai LLM backend needs a base_url (e.g. http://127.0.0.1:8000/v1)")
    return OpenAIChat(OpenAIConfig(base_url=base_url, model=model))

