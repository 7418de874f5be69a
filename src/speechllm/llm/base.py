"""The LLM protocols: chat (streamed) and log-likelihood scoring."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from speechllm.registry import Registry
from speechllm.speechlm import Message


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
