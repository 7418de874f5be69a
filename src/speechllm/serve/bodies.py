"""Typed request bodies for the JSON routes: a wrong type or an out-of-range number is a 400
in OpenAI's error shape, naming the field, before any of it reaches the models.

Fields OpenAI defines but speechllm ignores (temperature, user, ...) are accepted and left
alone, as OpenAI's own server does with fields it does not use; the ones speechllm reads are
strict (no "5" for 5, no true for 1, no "false" for false).
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator
from pydantic import ValidationError as _ValidationError

from speechllm.serve import codecs
from speechllm.serve.shared import APIError

Body = TypeVar("Body", bound=BaseModel)
# chat's `audio.format` -> the codec that writes it
CHAT_AUDIO_FORMATS = {"wav": "wav", "mp3": "mp3", "flac": "flac", "opus": "opus",
                      "pcm16": "pcm"}
MAX_DEPTH = 64  # JSON nesting beyond any real request; deeper is refused before parsing


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


def _one_of(value: str, known: Any) -> str:
    if value not in known:
        raise ValueError(f"must be one of {sorted(known)}, got {value!r}")
    return value


class SpeechBody(_Body):
    input: StrictStr
    response_format: StrictStr = "mp3"
    model: StrictStr | None = None
    voice: StrictStr | dict[str, Any] | None = None

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return _one_of(value, codecs.AUDIO_FORMATS)


class ChatAudio(_Body):
    format: StrictStr = "wav"
    voice: StrictStr | dict[str, Any] | None = None

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return _one_of(value, CHAT_AUDIO_FORMATS)


class ChatBody(_Body):
    messages: list[Any] = Field(min_length=1)
    modalities: list[Literal["text", "audio"]] | None = None
    audio: ChatAudio | None = None
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)
    stream: StrictBool = False
    model: StrictStr | None = None
    tools: list[Any] | None = None  # checked by speechllm.tools (a 400 names the bad one)
    tool_choice: Any = None


def _depth_ok(raw: bytes) -> bool:
    """Whether brackets nest no deeper than MAX_DEPTH (strings skipped), without parsing:
    Python's parser would recurse once per level and fail with RecursionError."""
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def parse(raw: bytes, kind: type[Body]) -> Body:
    """The body as `kind`; APIError 400 when it is not one."""
    if not _depth_ok(raw):
        raise APIError(400, f"the body nests deeper than {MAX_DEPTH} levels", "invalid_json")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the body is not valid JSON ({exc})", "invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "the body must be a JSON object", "invalid_json")
    try:
        return kind.model_validate(body)
    except _ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        raise APIError(400, f"{where}: {first['msg']}" if where else first["msg"],
                       "invalid_value", where) from None
