"""The LLM protocols: chat (streamed) and log-likelihood scoring."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from speechllm.registry import Registry
from speechllm.speechlm import Message
from speechllm.tools import Tool, ToolCall, ToolCallDelta, ToolChoice, ToolError, check_choice


@dataclass(frozen=True)
class GenerationOptions:
    max_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy, reproducible
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


class ChatLLM(Protocol):
    name: str

    def stream_chat(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> Iterator[str]:
        """Text pieces of the assistant's reply, as they are generated."""
        ...


@dataclass(frozen=True)
class ToolSet:
    """The tools a generation may call and how."""

    tools: tuple[Tool, ...]
    choice: ToolChoice = "auto"
    # a local backend decodes calls under a grammar built from the schemas, so even a small
    # model writes a known name and arguments that fit; False lets it write freely (the
    # result is still checked, and repaired or refused)
    constrained: bool = True
    # rounds of calls after the user speaks before the model must answer from the results
    # (the embedded 0.5B model, asked again, calls some other tool rather than answer)
    rounds: int = 1

    def __post_init__(self) -> None:
        check_choice(self.choice, self.tools)
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")


class ToolCallingLLM(ChatLLM, Protocol):
    def stream_tools(self, messages: Sequence[Message], options: GenerationOptions | None,
                     tools: ToolSet) -> Iterator[str | ToolCallDelta | ToolCall]:
        """Text pieces of the reply, or the calls the model makes: argument pieces as they are
        written (only where the backend guarantees they fit the schema) and then each call,
        complete and checked (`speechllm.tools.check_call`)."""
        ...


def last_user(messages: Sequence[Message]) -> int:
    """Where the user last spoke in `messages` (-1: nowhere)."""
    return max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)


def answered_calls(messages: Sequence[Message]) -> list[ToolCall]:
    """The calls made since the user last spoke whose results are in `messages`."""
    done = {m.tool_call_id for m in messages if m.role == "tool"}
    return [c for m in messages[last_user(messages) + 1:] for c in m.tool_calls if c.id in done]


def _repeats(call: ToolCall, answered: Sequence[ToolCall]) -> bool:
    """Whether `call` asks again for a result the model already has (the same tool with the
    same arguments, give or take ones the model added)."""
    args = call.args()
    return any(a.name == call.name and all(args.get(k) == v for k, v in a.args().items())
               for a in answered)


def settled(messages: Sequence[Message]) -> list[Message]:
    """`messages` with the calls and results of turns before the user's last one left out
    (their answers already say what the results were): past calls prime a small model to
    call a tool for any next question, and fill its window."""
    last = last_user(messages)
    if last < 0:
        return list(messages)
    kept = [m for m in messages[:last] if m.role != "tool" and (m.content or not m.tool_calls)]
    return [*(Message(m.role, m.content) if m.tool_calls else m for m in kept),
            *messages[last:]]


def fold_results(messages: Sequence[Message]) -> list[Message]:
    """The calls and results since the user last spoke, written into the user's message as
    plain text ("Result of f({...}): ..."), which a small model answers from where it would
    call again on the chat template's own tool turns."""
    last = last_user(messages)
    outputs = {m.tool_call_id: m.content for m in messages[last + 1:] if m.role == "tool"}
    lines = [f"Result of {c.name}({c.arguments}): {outputs[c.id]}"
             for m in messages[last + 1:] for c in m.tool_calls if c.id in outputs]
    asked = messages[last].content + "\n\n" if last >= 0 else ""
    head = [m for m in messages[: max(last, 0)] if m.role in ("system", "user", "assistant")
            and not m.tool_calls]
    if last < 0:
        head = [m for m in messages if m.role == "system"]
    return [*head, Message("user", asked + "\n".join(lines) + "\nAnswer using this result.")]


def stream_tools(llm: ChatLLM, messages: Sequence[Message], options: GenerationOptions | None,
                 tools: ToolSet) -> Iterator[str | ToolCallDelta | ToolCall]:
    """`llm.stream_tools`, except that after `tools.rounds` rounds of calls, or when a call
    repeats one whose result the model was just given, the model answers from the results
    written into the user's turn (`fold_results`): small models (the embedded 0.5B one) tend
    to call again instead of reading a result. The pieces of a call made after results are
    held until the call is known not to be such a repeat."""
    method = getattr(llm, "stream_tools", None)
    if method is None:
        raise ToolError(f"the LLM {llm.name!r} cannot call tools")
    messages = settled(messages)
    answered = answered_calls(messages)
    last = last_user(messages)
    if answered and sum(bool(m.tool_calls) for m in messages[last + 1:]) >= tools.rounds:
        yield from llm.stream_chat(fold_results(messages), options)
        return
    stream = method(messages, options, tools)
    if not answered or tools.choice != "auto":
        yield from stream
        return
    held: list[ToolCallDelta] = []
    for item in stream:
        if isinstance(item, ToolCallDelta):
            held.append(item)
        elif isinstance(item, ToolCall) and _repeats(item, answered):
            stream.close()
            yield from llm.stream_chat(fold_results(messages), options)
            return
        else:
            yield from held
            held.clear()
            yield item


def openai_messages(messages: Sequence[Message], arguments_as_object: bool = False
                    ) -> list[dict[str, Any]]:
    """Messages in OpenAI's chat shape; chat templates want a call's arguments as an object,
    the HTTP API as JSON text."""
    out: list[dict[str, Any]] = []
    for m in messages:
        item: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            calls = [c.to_openai() for c in m.tool_calls]
            if arguments_as_object:
                for c, call in zip(calls, m.tool_calls, strict=True):
                    c["function"]["arguments"] = call.args()
            item["tool_calls"] = calls
        if m.tool_call_id is not None:
            item["tool_call_id"] = m.tool_call_id
        out.append(item)
    return out


class ScoringLM(Protocol):
    def loglikelihood(self, text: str, context: str = "") -> float:
        """Sum of log P(token) over the tokens of `text`, conditioned on `context`."""
        ...


def chat(llm: ChatLLM, messages: Sequence[Message],
         options: GenerationOptions | None = None) -> str:
    """The whole reply of a streaming chat model."""
    return "".join(llm.stream_chat(messages, options))


# name -> factory(model, base_url); a local backend ignores base_url
LLM_BACKENDS: Registry[Callable[[str, str | None], ChatLLM]] = Registry("LLM backend")
LLM_BACKENDS.register("llama-cpp", "speechllm.llm.llama_cpp:llama_cpp_chat")
LLM_BACKENDS.register("openai", "speechllm.llm.openai_api:openai_chat")
