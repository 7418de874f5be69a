"""The OpenAI-compatible routes, as the official `openai` client calls them.

Every route goes through the served `SpeechLM` (any approach), never a component behind its
back: transcription and translation are `Request(intent="transcribe" | "translate")`, chat is
an ordinary turn. `/v1/audio/speech` is text to speech, which a `SpeechLM` does not define: it
uses the server's TTS (the cascade's own voice when the model is a cascade).

Long because it is the whole OpenAI HTTP surface (transcription, speech, chat with its
streamed text, audio and tool-call deltas) and the routes share the request checks and the
one admission slot per answer; each route is short.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from speechllm.asr.base import Segment
from speechllm.audio import Audio, load, probe
from speechllm.errors import AudioError, NoSpeechError
from speechllm.serve import codecs
from speechllm.serve.bodies import CHAT_AUDIO_FORMATS, ChatAudio, ChatBody, SpeechBody, parse
from speechllm.serve.shared import APIError, Services, error_body, services_of, timings_json
from speechllm.speechlm import (
    LANGUAGE,
    AudioChunk,
    Context,
    Done,
    ErrorEvent,
    Message,
    TextDelta,
    ToolCallEvent,
    TranscriptEvent,
    Usage,
)
from speechllm.speechlm import Request as Turn
from speechllm.speechlm import Response as Answer
from speechllm.tools import ToolCall, ToolCallDelta, ToolError, tool_choice_of, tools_of
from speechllm.tts.base import TTS, synthesize

router = APIRouter()
TRANSLATE = "Translate the audio into English."
CONTEXT_CHARS = 600  # of the conversation, as the recogniser's prompt (Whisper reads ~220 tokens)
SUBTITLE_FORMATS = {"json", "text", "srt", "vtt", "verbose_json"}


async def decoded(s: Services, data: bytes) -> Audio:
    """Uploaded bytes -> 16 kHz audio, for a caller holding a gate slot (so at most
    `workers` decodes hold memory at once, each bounded by the cap); AudioError -> 400."""
    return await s.gate.held(load, data, 16000, s.settings.max_audio_seconds)


# -- transcription and translation ---------------------------------------------------------

async def _speech_to_text(request: Request, file: UploadFile, response_format: str,
                          intent: str, prompt: str | None, spoken: str | None = None
                          ) -> Response:
    s = services_of(request)
    if spoken is not None and not LANGUAGE.fullmatch(spoken):
        raise APIError(400, f"language must be an ISO-639-1 code such as 'en', got {spoken!r}",
                       "invalid_value", "language")
    if response_format not in SUBTITLE_FORMATS:
        raise APIError(400, f"response_format must be one of {sorted(SUBTITLE_FORMATS)}, got "
                            f"{response_format!r}", "invalid_value", "response_format")
    system = TRANSLATE if intent == "translate" else (prompt or "Transcribe the audio exactly.")
    context = Context.parse(prompt) if prompt and prompt.strip() else None  # biases the ASR
    # One slot from reading the upload to the transcript: a request waiting for the models
    # holds nothing in memory (Starlette keeps uploads over 1 MB on disk), so memory grows
    # with `workers`, not with the number of uploads in flight.
    async with s.gate.turn():
        data = await file.read()
        audio = await decoded(s, data)
        del data
        turn = Turn(audio=audio, intent=intent, system=system,  # type: ignore[arg-type]
                    want_audio=False, context=context, language=spoken)
        try:
            answer = await s.gate.held(s.model.respond, turn)
            text, segments, heard_as = answer.text, answer.segments, answer.language
        except NoSpeechError:  # silence is not an error: it transcribes to nothing
            text, segments, heard_as = "", (), None
    if text and not segments:  # approaches that do not time their words: one segment
        segments = (Segment(0.0, audio.duration, text, 0.0, 0.0),)
    # the language asked for, else the one the recogniser heard (approaches that do not say:
    # "en", as before)
    language = "english" if intent == "translate" else (spoken or heard_as or "en")
    if response_format == "text":
        return PlainTextResponse(text + "\n")
    if response_format == "srt":
        return PlainTextResponse(codecs.srt(segments))
    if response_format == "vtt":
        return PlainTextResponse(codecs.vtt(segments), media_type="text/vtt")
    if response_format == "verbose_json":
        return JSONResponse({"task": intent, "language": language,
                             "duration": round(audio.duration, 3), "text": text,
                             "segments": codecs.verbose_segments(segments)})
    return JSONResponse({"text": text})


@router.post("/v1/audio/transcriptions")
async def transcriptions(request: Request, file: UploadFile = File(...),  # noqa: B008
                         model: str = Form("whisper-1"), response_format: str = Form("json"),
                         prompt: str | None = Form(None), language: str | None = Form(None),
                         temperature: float = Form(0.0)) -> Response:
    return await _speech_to_text(request, file, response_format, "transcribe", prompt,
                                 language or None)


@router.post("/v1/audio/translations")
async def translations(request: Request, file: UploadFile = File(...),  # noqa: B008
                       model: str = Form("whisper-1"), response_format: str = Form("json"),
                       prompt: str | None = Form(None),
                       temperature: float = Form(0.0)) -> Response:
    return await _speech_to_text(request, file, response_format, "translate", prompt)


# -- text to speech --------------------------------------------------------------------------

@router.post("/v1/audio/speech")
async def speech(request: Request) -> Response:
    s = services_of(request)
    spec = parse(await request.body(), SpeechBody)
    text = spec.input
    if not text.strip():
        raise APIError(400, "input: a non-empty string is required", "invalid_value", "input")
    if len(text) > s.settings.max_text_chars:
        raise APIError(400, f"input: {len(text)} characters; the cap is "
                            f"{s.settings.max_text_chars}", "invalid_value", "input")
    fmt = spec.response_format
    if s.tts is None:
        raise APIError(400, "this server has no TTS voice (started with --tts none)",
                       "no_tts")
    tts = s.tts
    audio = await s.gate.run(lambda: synthesize(tts, text))
    data, media = codecs.encode(audio, fmt)
    return Response(data, media_type=media)


# -- chat -----------------------------------------------------------------------------------

def _text_of(content: Any, where: str) -> tuple[str, list[dict[str, Any]]]:
    """(text, input_audio parts) of a message's content."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise APIError(400, f"{where}.content: expected a string or a list of parts",
                       "invalid_value", f"{where}.content")
    texts, audios = [], []
    for n, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "input_audio" and isinstance(part.get("input_audio"), dict):
            audios.append(part["input_audio"])
        else:
            raise APIError(400, f"{where}.content[{n}]: expected a text or input_audio part",
                           "invalid_value", f"{where}.content[{n}]")
    return " ".join(texts), audios


def _message_of(m: Any, n: int) -> Message | str:
    """An earlier message as history, or the text of a system/developer message."""
    where = f"messages[{n}]"
    if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user",
                                                         "assistant", "tool"):
        raise APIError(400, f"{where}: needs a role of system, developer, user, assistant or "
                            "tool", "invalid_value", where)
    text, _ = _text_of(m.get("content"), where)
    if m["role"] in ("system", "developer"):
        return text
    if m["role"] == "tool":
        call_id = m.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise APIError(400, f"{where}: a tool message needs tool_call_id", "invalid_value",
                           f"{where}.tool_call_id")
        return Message("tool", text, tool_call_id=call_id)
    calls: tuple[ToolCall, ...] = ()
    if m["role"] == "assistant":
        if not text and isinstance(m.get("audio"), dict):
            text = str(m["audio"].get("transcript", ""))
        raw = m.get("tool_calls") or []
        if not isinstance(raw, list):
            raise APIError(400, f"{where}.tool_calls: expected a list", "invalid_value",
                           f"{where}.tool_calls")
        try:
            calls = tuple(ToolCall.of(c) for c in raw)
        except ToolError as exc:
            raise APIError(400, f"{where}.tool_calls: {exc}", "invalid_value",
                           f"{where}.tool_calls") from None
    return Message(m["role"], text, tool_calls=calls)


def _audio_bytes(part: dict[str, Any]) -> bytes:
    try:
        return base64.b64decode(part.get("data") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise APIError(400, "input_audio.data: not valid base64", "invalid_audio",
                       "input_audio") from None


async def _heard(s: Services, part: dict[str, Any]) -> str:
    """What an earlier spoken user message said: remembered from when it was asked, else
    transcribed now."""
    data = _audio_bytes(part)
    key = hashlib.sha1(data).hexdigest()
    if key not in s.heard:
        async with s.gate.turn():  # one slot from decoding to the transcript
            audio = await decoded(s, data)
            try:
                answer = await s.gate.held(s.model.respond, Turn(
                    audio=audio, intent="transcribe", want_audio=False))
                s.remember(key, answer.text)
            except NoSpeechError:
                s.remember(key, "")
    return s.heard[key]


@dataclass(frozen=True)
class ChatTurn:
    """A chat request as one `SpeechLM` turn, its spoken question checked but not decoded
    yet: `ready` decodes it inside the slot that answers it, so a request waiting for the
    models holds its body but no decoded audio."""

    fields: dict[str, Any]  # the Request's fields but `audio`
    data: bytes | None  # the spoken question's file
    fmt: str | None  # the audio format the answer is wanted in, if any
    key: str | None  # under which to remember what the spoken question said

    async def ready(self, s: Services) -> Turn:
        """The turn, its audio decoded; call it holding a gate slot."""
        audio = None if self.data is None else await decoded(s, self.data)
        return Turn(audio=audio, **self.fields)


async def turn_of(s: Services, spec: ChatBody) -> ChatTurn:
    """The chat request as one `SpeechLM` turn; bad audio is refused here, from its header,
    before the request waits for the models."""
    messages = spec.messages
    system: list[str] = []
    history: list[Message] = []
    try:
        tools = tools_of(spec.tools) if spec.tools is not None else ()
        choice = tool_choice_of(spec.tool_choice, tools)
    except ToolError as exc:
        param = "tool_choice" if str(exc).startswith("tool_choice") else "tools"
        raise APIError(400, str(exc), "invalid_value", param) from None
    # the latest spoken question before this message: the one a tool round answers
    asked_last = max((i for i, x in enumerate(messages[:-1])
                      if isinstance(x, dict) and x.get("role") == "user"), default=-1)
    for n, m in enumerate(messages[:-1]):
        got = _message_of(m, n)
        if isinstance(got, str):
            system.append(got)
            continue
        if got.role == "user" and not got.content:  # a spoken question sent back
            _, parts = _text_of(m.get("content"), f"messages[{n}]")
            if parts and n == asked_last:
                got = Message("user", await _heard(s, parts[0]))
        if got.content or got.tool_calls or got.role == "tool":
            history.append(got)
    last = messages[-1]
    if isinstance(last, dict) and last.get("role") == "tool":
        got = _message_of(last, len(messages) - 1)
        assert isinstance(got, Message)
        history.append(got)
        last = {"role": "user", "content": None}
    if not isinstance(last, dict) or last.get("role") != "user":
        raise APIError(400, "the last message must come from the user (or be a tool's "
                            "result)", "invalid_value", "messages")
    text, audio_parts = _text_of(last.get("content"), f"messages[{len(messages) - 1}]")
    if len(audio_parts) > 1:
        raise APIError(400, "one input_audio part per request", "invalid_value", "messages")
    data, audio_key = None, None
    if audio_parts:
        data = _audio_bytes(audio_parts[0])
        audio_key = hashlib.sha1(data).hexdigest()
        await asyncio.to_thread(probe, data, s.settings.max_audio_seconds)
        if text:  # spoken question plus a typed instruction: the instruction guides it
            system.append(text)
            text = ""
    want_audio = "audio" in (spec.modalities or ["text"])
    fmt = CHAT_AUDIO_FORMATS[(spec.audio or ChatAudio()).format] if want_audio else None
    limit = spec.max_completion_tokens or spec.max_tokens  # None: the model's own limit
    # what was said before, and the instructions, bias how the spoken turn is heard
    said = " ".join([*system, *(m.content for m in history[-4:] if m.role != "tool")]
                    ).strip()[-CONTEXT_CHARS:]
    if data is None and not text.strip() and not (history and history[-1].role == "tool"):
        raise APIError(400, "the last message has no text or audio", "invalid_value",
                       "messages")
    fields: dict[str, Any] = dict(text=text or None, system="\n".join(system) or None,
                                  history=tuple(history), want_audio=want_audio,
                                  max_tokens=limit, tools=tools, tool_choice=choice,
                                  context=Context((), said) if data is not None and said
                                  else None)
    # a request that cannot be a turn fails here, before it waits (the audio stands in)
    Turn(audio=None if data is None else Audio.silence(0.1), **fields)
    return ChatTurn(fields, data, fmt, audio_key)


async def _speak_if_needed(s: Services, answer: Answer) -> Audio | None:
    """The answer's own audio, or the server's TTS for approaches that answer in text."""
    if answer.audio is not None or s.tts is None or not answer.text.strip():
        return answer.audio
    tts = s.tts
    return await s.gate.run(lambda: synthesize(tts, answer.text))


def _all_parts(tts: TTS, text: str) -> list[Audio]:
    return list(tts.stream(text))


def _envelope(s: Services, cid: str, created: int, kind: str) -> dict[str, Any]:
    return {"id": cid, "object": kind, "created": created, "model": s.settings.model_id}


@router.post("/v1/chat/completions")
async def chat(request: Request) -> Response:
    s = services_of(request)
    spec = parse(await request.body(), ChatBody)
    pending = await turn_of(s, spec)
    fmt, key = pending.fmt, pending.key
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if spec.stream:
        return StreamingResponse(_chat_stream(s, pending, cid, created),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    async with s.gate.turn():
        answer: Answer = await s.gate.held(s.model.respond, await pending.ready(s))
    if key is not None and answer.transcript is not None:
        s.remember(key, answer.transcript)
    message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
    if answer.tool_calls:
        message["content"] = answer.text or None
        message["tool_calls"] = [c.to_openai() for c in answer.tool_calls]
    if fmt is not None:
        audio = await _speak_if_needed(s, answer)
        if audio is not None:
            data, _ = codecs.encode(audio, fmt)
            message["audio"] = {"id": f"audio_{uuid.uuid4().hex[:24]}",
                                "data": base64.b64encode(data).decode(),
                                "expires_at": created + 3600, "transcript": answer.text}
    return JSONResponse({
        **_envelope(s, cid, created, "chat.completion"),
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "tool_calls" if answer.tool_calls else "stop",
                     "logprobs": None}],
        "usage": (answer.usage or Usage()).to_openai(),
        "speechllm": {"transcript": answer.transcript, "timings": timings_json(answer.timings)},
    })


async def _chat_stream(s: Services, pending: ChatTurn, cid: str, created: int
                       ) -> AsyncIterator[str]:
    """Server-sent chat.completion.chunk events; audio comes as base64 24 kHz pcm16."""
    head = _envelope(s, cid, created, "chat.completion.chunk")
    audio_id = f"audio_{uuid.uuid4().hex[:24]}"

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return "data: " + json.dumps({**head, "choices": [{"index": 0, "delta": delta,
                                                           "finish_reason": finish}],
                                      **extra}) + "\n\n"

    def audio_delta(audio: Audio, text: str) -> str:
        pcm = base64.b64encode(audio.resample(codecs.PCM_RATE).to_pcm16()).decode()
        return chunk({"audio": {"id": audio_id, "data": pcm, "transcript": text}})

    def call_delta(index: int, arguments: str, call: ToolCallDelta | ToolCall | None = None
                   ) -> str:
        item: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
        if call is not None:  # a call's first piece names it, as OpenAI streams them
            item.update(id=call.id, type="function")
            item["function"]["name"] = call.name
        return chunk({"tool_calls": [item]})

    yield chunk({"role": "assistant", "content": ""})
    spoke = False
    streamed: set[str] = set()  # calls whose arguments went out piece by piece
    key = pending.key
    async with s.gate.turn():
        try:
            turn = await pending.ready(s)
        except AudioError as exc:  # its header passed, its samples did not
            yield "data: " + json.dumps(error_body(str(exc), 400, "AudioError")) + "\n\n"
            return
        async for event in s.model.stream(turn):
            if isinstance(event, TextDelta):
                yield chunk({"content": event.text})
            elif isinstance(event, TranscriptEvent) and key is not None:
                s.remember(key, event.text)
            elif isinstance(event, ToolCallDelta):
                first = event.id not in streamed
                streamed.add(event.id)
                yield call_delta(event.index, event.arguments, event if first else None)
            elif isinstance(event, ToolCallEvent) and event.call.id not in streamed:
                yield call_delta(event.index, event.call.arguments, event.call)
            elif isinstance(event, AudioChunk) and turn.want_audio:
                spoke = True
                yield audio_delta(event.audio, event.text)
            elif isinstance(event, ErrorEvent):
                code = 400 if event.kind in ("NoSpeechError", "AudioError") else 500
                yield "data: " + json.dumps(error_body(event.message, code, event.kind)) + "\n\n"
                return
            elif isinstance(event, Done):
                answer = event.response
                if turn.want_audio and not spoke and s.tts is not None and answer.text.strip():
                    parts = await asyncio.get_running_loop().run_in_executor(
                        s.gate.pool, _all_parts, s.tts, answer.text)
                    for part in parts:
                        yield audio_delta(part, answer.text)
                yield chunk({}, "tool_calls" if answer.tool_calls else "stop",
                            usage=(answer.usage or Usage()).to_openai(),
                            speechllm={"transcript": answer.transcript,
                                       "timings": timings_json(answer.timings)})
    yield "data: [DONE]\n\n"


# -- models -------------------------------------------------------------------------------

@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    s = services_of(request)
    return {"object": "list", "data": [{"id": s.settings.model_id, "object": "model",
                                        "created": 0, "owned_by": "speechllm",
                                        "approach": s.settings.approach.get("approach",
                                                                            "cascade")}]}
