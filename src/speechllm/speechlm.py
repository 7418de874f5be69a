"""The one interface every approach implements (cascade, latent, audio tokens).

Tasks, evaluation, the CLI and the server only ever see `SpeechLM`, `Request`, `Response` and
the `Event`s of a stream, so they never branch on the approach.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from speechllm.asr.base import Segment
from speechllm.audio import Audio
from speechllm.timing import Span, Timings
from speechllm.tools import Tool, ToolCall, ToolCallDelta, ToolChoice, check_choice

LANGUAGE = re.compile(r"[a-z]{2,3}")  # a language code as Whisper knows them ("en", "haw")

Role = Literal["system", "user", "assistant", "tool"]
Intent = Literal["respond", "transcribe", "translate"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn that called tools
    tool_call_id: str | None = None  # a "tool" message: the call whose result `content` is


DEFAULT_MAX_TOKENS = 256  # a model's answer limit when neither request nor config sets one



@dataclass(frozen=True)
class Context:
    """What the speech is likely about, for the recogniser and its post-processing (contextual
    biasing): names, rare words and jargon that may be said, and free text such as the
    conversation so far or the topic."""

    phrases: tuple[str, ...] = ()
    text: str = ""

    def __bool__(self) -> bool:
        return bool(self.phrases or self.text.strip())

    @classmethod
    def of(cls, value: object) -> Context | None:
        """From a manifest's "context" field: a list of phrases, a string of free text, or
        {"phrases": [...], "text": "..."}; ValueError for anything else."""
        if value is None:
            return None
        if isinstance(value, str):
            return cls((), value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return cls(tuple(value))
        if isinstance(value, dict) and set(value) <= {"phrases", "text"}:
            phrases, text = value.get("phrases", []), value.get("text", "")
            if isinstance(phrases, list) and all(isinstance(v, str) for v in phrases) and \
                    isinstance(text, str):
                return cls(tuple(phrases), text)
        raise ValueError(f"context: a list of phrases, a text, or {{\"phrases\", \"text\"}}; "
                         f"got {value!r}"[:200])

    @classmethod
    def read(cls, given: str) -> Context:
        """`--context`: a file (one phrase per line; a line that is a sentence of more than six
        words is free text) or the text itself (comma-separated phrases if it has commas and
        no sentence, else free text)."""
        from pathlib import Path

        path = Path(given)
        if len(given) < 4096 and path.is_file():
            lines = [x.strip() for x in path.read_text(encoding="utf-8").splitlines()]
            phrases = tuple(x for x in lines if x and len(x.split()) <= 6)
            text = " ".join(x for x in lines if len(x.split()) > 6)
            return cls(phrases, text)
        return cls.parse(given)

    @classmethod
    def parse(cls, text: str) -> Context:
        """Comma-separated phrases (several, none a sentence) or else free text; never a
        file (what a server does with a client's `prompt`)."""
        parts = [p.strip().rstrip(".") for p in text.split(",")]
        if len(parts) > 1 and all(0 < len(p.split()) <= 6 for p in parts):
            return cls(tuple(parts))
        return cls((), text.strip())


@dataclass(frozen=True)
class AnswerOptions:
    """A model's defaults for requests that do not set their own (an end-to-end model's
    inference options, settable from an approach config's `options`)."""

    max_tokens: int = DEFAULT_MAX_TOKENS  # answer limit of a request without max_tokens
    instruction: str | None = None  # used when a request has no system prompt; None: built-in

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")


@dataclass(frozen=True)
class Request:
    """One user turn: speech (or text) in, plus the instruction and the conversation so far."""

    audio: Audio | None = None
    text: str | None = None  # typed input; used when there is no audio
    system: str | None = None  # system prompt; None uses the model's default
    history: tuple[Message, ...] = ()  # earlier turns, oldest first, without the system prompt
    want_audio: bool = True  # synthesise the answer as speech
    max_tokens: int | None = None  # longest answer in tokens; None: the model's default
    # "transcribe": the answer is what was said; "translate": what was said, in English. A
    # cascade answers both from its ASR without running the LLM; end-to-end approaches follow
    # `system` as their instruction.
    intent: Intent = "respond"
    context: Context | None = None  # contextual biasing: likely names, terms, the topic
    # functions the model may call instead of answering (speechllm.tools); the answer then
    # carries `tool_calls`, and the next Request brings their results as "tool" messages
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = "auto"
    # the language spoken (a code such as "en"): the recogniser is told it instead of guessing
    # from the audio, which a short clip can mislead; None: detected. Approaches without a
    # recogniser of their own ignore it.
    language: str | None = None

    def __post_init__(self) -> None:
        if self.audio is None and not (self.text and self.text.strip()) and \
                not self.continues_tools:
            raise ValueError("a Request needs audio or non-empty text (or a history ending in "
                             "tool results)")
        if self.intent not in ("respond", "transcribe", "translate"):
            raise ValueError("intent must be 'respond', 'transcribe' or 'translate', got "
                             f"{self.intent!r}")
        if self.intent != "respond" and self.audio is None:
            raise ValueError(f"a {self.intent} Request needs audio")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        check_choice(self.tool_choice, self.tools)
        if self.language is not None and not LANGUAGE.fullmatch(self.language):
            raise ValueError(f"language must be a code such as 'en', got {self.language!r}")

    @property
    def continues_tools(self) -> bool:
        """A turn with no new input that answers from the tool results ending the history."""
        return bool(self.history) and self.history[-1].role == "tool"

    @property
    def uses_tools(self) -> bool:
        return bool(self.tools) or any(m.role == "tool" or m.tool_calls for m in self.history)

    def token_limit(self, default: int = DEFAULT_MAX_TOKENS) -> int:
        """The answer's length limit: the request's, else the model's `default`."""
        return self.max_tokens if self.max_tokens is not None else default


@dataclass(frozen=True)
class Usage:
    """Tokens the language model read (the prompt it was given) and wrote for one answer,
    counted with its own tokenizer."""

    input_tokens: int = 0
    output_tokens: int = 0

    def to_openai(self) -> dict[str, int]:
        """Chat completions' `usage` object."""
        return {"prompt_tokens": self.input_tokens, "completion_tokens": self.output_tokens,
                "total_tokens": self.input_tokens + self.output_tokens}


@dataclass(frozen=True, eq=False)
class Response:
    text: str  # the answer
    transcript: str | None  # what the system heard (None for text input)
    audio: Audio | None  # the spoken answer, when asked for
    timings: Timings
    history: tuple[Message, ...] = ()  # the conversation including this turn, for the next Request
    # timed pieces of the transcript, in seconds of the request's audio, when the approach
    # knows them (a cascade's ASR does); empty otherwise
    segments: tuple[Segment, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()  # calls the model made instead of (or after) text
    usage: Usage | None = None  # the LLM's token counts, where the approach knows them
    # the language the user's speech was heard as (ISO code), where the approach knows it: the
    # one asked for, else the one the recogniser detected
    language: str | None = None


# --- stream events -------------------------------------------------------------------------


@dataclass(frozen=True)
class TranscriptEvent:
    text: str  # final transcript of the user's turn


@dataclass(frozen=True)
class TextDelta:
    text: str  # next piece of the answer


@dataclass(frozen=True, eq=False)
class AudioChunk:
    audio: Audio  # next piece of the spoken answer, ready to play
    text: str  # the clause it speaks


@dataclass(frozen=True)
class ToolCallEvent:
    index: int  # the call's place in this turn
    call: ToolCall  # a call, complete and checked against its tool's schema


@dataclass(frozen=True)
class SpanEvent:
    span: Span  # a stage finished


@dataclass(frozen=True)
class ErrorEvent:
    message: str  # the turn failed; the session can go on
    kind: str = "SpeechLLMError"  # the exception class, e.g. "NoSpeechError", "ModelError"


@dataclass(frozen=True, eq=False)
class Done:
    response: Response = field()


Event = (TranscriptEvent | TextDelta | AudioChunk | ToolCallDelta | ToolCallEvent | SpanEvent
         | ErrorEvent | Done)


@runtime_checkable
class SpeechLM(Protocol):
    """A speech language model: answer a turn whole, or as a stream of events ending in Done."""

    def respond(self, request: Request) -> Response: ...

    def stream(self, request: Request) -> AsyncIterator[Event]: ...
