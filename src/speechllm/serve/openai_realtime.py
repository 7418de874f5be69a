"""The OpenAI Realtime API's WebSocket protocol on `/v1/realtime`, over speechllm's realtime
session: a bridge (the socket the session sees) turns OpenAI client events into the session's
messages and the session's events into OpenAI server events, so the official `openai`
client's `realtime.connect` holds a spoken conversation with only its base URL changed.

A connection speaks this protocol when it names a `model` in its URL (as every OpenAI client
does) or sends an `OpenAI-Beta: realtime` header; otherwise `/v1/realtime` speaks
speechllm's own protocol (binary PCM frames). Current (GA) event names are sent; the beta
names clients may send (`input_audio_format`, `modalities`, ...) are accepted. What is and is
not supported: docs/serving.md.

Long because it is one translation table, both ways, plus the per-response bookkeeping
(response, item and content part ids) that OpenAI's events carry.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

from fastapi import WebSocket

from speechllm.serve import g711
from speechllm.serve.codecs import audio_of_delta

# OpenAI audio formats -> (codec, sample rate); GA {"type": ...} objects and beta strings
FORMATS = {"audio/pcm": ("pcm16", 24000), "pcm16": ("pcm16", 24000),
           "audio/pcmu": ("mulaw", 8000), "g711_ulaw": ("mulaw", 8000),
           "audio/pcma": ("alaw", 8000), "g711_alaw": ("alaw", 8000)}
GA_NAMES = {"pcm16": "audio/pcm", "mulaw": "audio/pcmu", "alaw": "audio/pcma"}


def wants_openai(ws: WebSocket) -> bool:
    """Whether a `/v1/realtime` connection speaks OpenAI's protocol."""
    return "model" in ws.query_params or "realtime" in ws.headers.get("openai-beta", "")


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _format(value: Any) -> tuple[str, int] | None:
    name = value.get("type") if isinstance(value, dict) else value
    return FORMATS.get(name) if isinstance(name, str) else None


class OpenAIRealtimeBridge:
    """The socket `realtime.run_session` talks to, speaking OpenAI's protocol outside."""

    def __init__(self, ws: WebSocket, model: str) -> None:
        self.ws, self.app = ws, ws.app
        self.headers, self.query_params = ws.headers, ws.query_params
        self.model = model
        self.inbox: collections.deque[MutableMapping[str, Any]] = collections.deque()
        self.input = ("pcm16", 24000)
        self.output = ("pcm16", 24000)
        self.voice = "alloy"
        self.modalities = ["audio"]
        self.instructions = ""
        self.tools: list[Any] = []
        self.tool_choice: Any = "auto"
        self.max_tokens: Any = "inf"
        self.vad = True
        self.transcribe = True  # send the user's words as input_audio_transcription events
        self.detection: dict[str, Any] = {"type": "server_vad"}
        self.timing: dict[str, Any] = {}  # the session's turn timing, as it reports it
        self.session_id = _id("sess")
        self.user_item: str | None = None  # the user's audio item being heard
        self.started = time.perf_counter()
        self.reply: dict[str, Any] | None = None  # the response being sent
        self.answering_commit = False  # a commit started a response: absorb response.create

    # -- client -> session ----------------------------------------------------------------

    async def _error(self, message: str, code: str = "invalid_request_error",
                     event_id: str | None = None) -> None:
        await self._emit("error", error={"type": "invalid_request_error", "code": code,
                                         "message": message, "param": None,
                                         "event_id": event_id})

    def _session_update(self, session: Any) -> dict[str, Any] | str:
        """The session's own `session.update` fields, or what is wrong."""
        if not isinstance(session, dict):
            return "session.update needs a 'session' object"
        audio = _dict(session.get("audio"))
        inp, out = _dict(audio.get("input")), _dict(audio.get("output"))
        own: dict[str, Any] = {}
        for value, side in ((inp.get("format", session.get("input_audio_format")), "input"),
                            (out.get("format", session.get("output_audio_format")), "output")):
            if value is None:
                continue
            fmt = _format(value)
            if fmt is None:
                return (f"audio {side} format {value!r}: audio/pcm (24 kHz), audio/pcmu or "
                        "audio/pcma (8 kHz G.711)")
            setattr(self, side, fmt)
        own["input_sample_rate"] = self.input[1]
        modalities = session.get("output_modalities", session.get("modalities"))
        if modalities is not None:
            if not isinstance(modalities, list) or not set(modalities) <= {"text", "audio"}:
                return "output_modalities: a list of 'text' and/or 'audio'"
            self.modalities = ["audio"] if "audio" in modalities else ["text"]
            own["want_audio"] = "audio" in modalities
        if "turn_detection" in inp or "turn_detection" in session:
            detection = inp.get("turn_detection", session.get("turn_detection"))
            if detection is not None and not isinstance(detection, dict):
                return "turn_detection: an object ({'type': 'server_vad', ...}) or null"
            self.vad = detection is not None
            if detection is not None:
                self.detection = {k: detection[k] for k in ("type", "eagerness")
                                  if k in detection}
            # the session checks and applies the settings (speechllm.serve.realtime)
            own["turn_detection"] = detection if detection is not None else "none"
        for holder, key in ((inp, "transcription"), (session, "input_audio_transcription")):
            if key in holder:  # null: no transcription events (the answer is unchanged)
                if holder[key] is not None and not isinstance(holder[key], dict):
                    return f"{key}: an object ({{'model': ...}}) or null"
                self.transcribe = holder[key] is not None
                if holder[key] is not None and "language" in holder[key]:
                    own["language"] = holder[key]["language"] or None  # the recogniser's
        if "instructions" in session:
            self.instructions = session["instructions"] or ""
            own["instructions"] = self.instructions
        limit = session.get("max_output_tokens", session.get("max_response_output_tokens"))
        if isinstance(limit, int) and not isinstance(limit, bool):
            own["max_tokens"], self.max_tokens = limit, limit
        for key in ("tools", "tool_choice"):
            if key in session:
                own[key] = session[key]
                setattr(self, key, session[key])
        voice = out.get("voice", session.get("voice"))
        if isinstance(voice, str):
            self.voice = voice  # accepted; the server speaks with its own voice
        return own

    def _audio_in(self, data: bytes) -> bytes:
        codec, _ = self.input
        if codec == "pcm16":
            return data[: len(data) // 2 * 2]
        return g711.decode(data, "alaw" if codec == "alaw" else "mulaw").tobytes()

    async def receive(self) -> MutableMapping[str, Any]:
        while not self.inbox:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return message
            await self._translate_in(message)
        return self.inbox.popleft()

    def _own(self, kind: str, **data: Any) -> None:
        self.inbox.append({"type": "websocket.receive",
                           "text": json.dumps({"type": kind, **data})})

    async def _translate_in(self, message: MutableMapping[str, Any]) -> None:
        text = message.get("text")
        if text is None:
            await self._error("binary frames are not part of the Realtime API: send audio "
                              "as input_audio_buffer.append")
            return
        try:
            event = json.loads(text)
            kind = event["type"]
        except (json.JSONDecodeError, KeyError, TypeError):
            await self._error("events must be JSON objects with a 'type'")
            return
        event_id = event.get("event_id") if isinstance(event, dict) else None
        if kind == "session.update":
            own = self._session_update(event.get("session"))
            if isinstance(own, str):
                await self._error(own, event_id=event_id)
            else:
                self._own("session.update", session=own)
        elif kind == "input_audio_buffer.append":
            try:
                data = base64.b64decode(event.get("audio") or "", validate=True)
            except (binascii.Error, ValueError, TypeError):
                await self._error("input_audio_buffer.append: audio is not base64",
                                  event_id=event_id)
                return
            if data:
                self.inbox.append({"type": "websocket.receive", "bytes": self._audio_in(data)})
        elif kind == "input_audio_buffer.commit":
            self.user_item = self.user_item or _id("item")
            await self._emit("input_audio_buffer.committed", item_id=self.user_item,
                             previous_item_id=None)
            self._own("input_audio_buffer.commit")  # the session answers a committed turn
            self.answering_commit = True  # ... so the response.create that follows is done
        elif kind == "response.create" and self.answering_commit:
            self.answering_commit = False
        elif kind == "input_audio_buffer.clear":
            await self._emit("input_audio_buffer.cleared")
            self._own("input_audio_buffer.clear")
        elif kind == "conversation.item.create":
            item = event.get("item")
            if not isinstance(item, dict) or item.get("type") not in ("message",
                                                                      "function_call_output"):
                await self._error("conversation.item.create: a user message (input_text) or "
                                  "a function_call_output", event_id=event_id)
                return
            self._own("conversation.item.create", item=item)
        elif kind in ("response.create", "response.cancel"):
            self.answering_commit = False
            self._own(kind)
        elif kind == "conversation.item.truncate":  # the client stopped playing: noted
            await self._emit("conversation.item.truncated", item_id=event.get("item_id"),
                             content_index=event.get("content_index", 0),
                             audio_end_ms=event.get("audio_end_ms", 0))
        else:
            await self._error(f"event {kind!r} is not supported by this server",
                              code="unsupported_event", event_id=event_id)

    # -- session -> client ----------------------------------------------------------------

    async def _emit(self, kind: str, **data: Any) -> None:
        await self.ws.send_text(json.dumps({"type": kind, "event_id": _id("event"), **data}))

    def session_object(self) -> dict[str, Any]:
        def fmt(side: tuple[str, int]) -> dict[str, Any]:
            out: dict[str, Any] = {"type": GA_NAMES[side[0]]}
            if side[0] == "pcm16":
                out["rate"] = side[1]
            return out

        return {"type": "realtime", "object": "realtime.session", "id": self.session_id,
                "model": self.model, "output_modalities": self.modalities,
                "instructions": self.instructions, "tools": self.tools,
                "tool_choice": self.tool_choice, "max_output_tokens": self.max_tokens,
                "audio": {"input": {"format": fmt(self.input),
                                    "transcription": {"model": "whisper"} if self.transcribe
                                    else None,
                                    "turn_detection": self._detection() if self.vad
                                    else None},
                          "output": {"format": fmt(self.output), "voice": self.voice}}}

    def _detection(self) -> dict[str, Any]:
        """`turn_detection` as applied: interrupt_response is always true (speech over an
        answer interrupts it unless the server judges it a backchannel or an echo)."""
        out = dict(self.detection)
        if out.get("type") == "semantic_vad":
            out.setdefault("eagerness", "auto")
        else:
            out.update({k: self.timing[k] for k in ("threshold", "prefix_padding_ms",
                                                    "silence_duration_ms")
                        if k in self.timing})
        out.update(create_response=self.timing.get("create_response", True),
                   interrupt_response=True)
        return out

    def _ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    async def _begin(self, turn: int) -> dict[str, Any]:
        """The response for `turn`, announcing it on its first event."""
        if self.reply is None or self.reply["turn"] != turn:
            self.reply = {"turn": turn, "id": _id("resp"), "items": [], "message": None,
                          "transcript": "", "calls": {}}
            await self._emit("response.created", response=self._response("in_progress"))
        return self.reply

    async def _message_item(self, reply: dict[str, Any]) -> str:
        if reply["message"] is None:
            item = _id("item")
            reply["message"] = item
            reply["items"].append({"id": item, "type": "message", "role": "assistant",
                                   "status": "in_progress", "content": []})
            await self._emit("response.output_item.added", response_id=reply["id"],
                             output_index=len(reply["items"]) - 1,
                             item=reply["items"][-1])
            kind = "audio" if self.modalities == ["audio"] else "text"
            await self._emit("response.content_part.added", response_id=reply["id"],
                             item_id=item, output_index=len(reply["items"]) - 1,
                             content_index=0, part={"type": kind, "transcript": ""}
                             if kind == "audio" else {"type": "text", "text": ""})
        return str(reply["message"])

    def _where(self, reply: dict[str, Any], item: str) -> dict[str, Any]:
        index = next(i for i, it in enumerate(reply["items"]) if it["id"] == item)
        return {"response_id": reply["id"], "item_id": item, "output_index": index}

    def _response(self, status: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = self.reply or {"id": _id("resp"), "items": []}
        usage = usage or {}
        read, wrote = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        # the LLM reads and writes text: the speech on either side is counted in seconds by
        # the recogniser and the voice, not in tokens
        return {"object": "realtime.response", "id": reply["id"], "status": status,
                "output": reply["items"], "output_modalities": self.modalities,
                "usage": {"total_tokens": read + wrote, "input_tokens": read,
                          "output_tokens": wrote,
                          "input_token_details": {"text_tokens": read, "audio_tokens": 0,
                                                  "cached_tokens": 0},
                          "output_token_details": {"text_tokens": wrote, "audio_tokens": 0}},
                "status_details": None, "metadata": None}

    def _audio_out(self, event: dict[str, Any]) -> str:
        codec, rate = self.output
        audio = audio_of_delta(event)
        data = audio.resample(rate).to_pcm16() if codec == "pcm16" else \
            g711.encode_audio(audio, "alaw" if codec == "alaw" else "mulaw")
        return base64.b64encode(data).decode()

    async def send_text(self, text: str) -> None:
        event = json.loads(text)
        kind = event.pop("type")
        turn = event.get("turn", 0)
        if kind in ("session.created", "session.updated"):
            self.timing = event.get("session", {}).get("vad", self.timing)
            await self._emit(kind, session=self.session_object())
        elif kind == "input_audio_buffer.speech_started":
            self.user_item = _id("item")
            await self._emit(kind, audio_start_ms=self._ms(), item_id=self.user_item)
        elif kind == "input_audio_buffer.speech_stopped":
            item = self.user_item or _id("item")
            await self._emit(kind, audio_end_ms=self._ms(), item_id=item)
            await self._emit("input_audio_buffer.committed", item_id=item,
                             previous_item_id=None)
            await self._emit("conversation.item.added", previous_item_id=None, item={
                "id": item, "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_audio", "transcript": None}]})
            self.user_item = item
        elif kind == "transcript" and self.transcribe:
            await self._emit("conversation.item.input_audio_transcription.completed",
                             item_id=self.user_item or _id("item"), content_index=0,
                             transcript=event.get("text", ""),
                             usage={"type": "duration", "seconds": 0})
        elif kind == "response.text.delta":
            reply = await self._begin(turn)
            item = await self._message_item(reply)
            reply["transcript"] += event.get("delta", "")
            name = "response.output_audio_transcript.delta" if self.modalities == ["audio"] \
                else "response.output_text.delta"
            await self._emit(name, **self._where(reply, item), content_index=0,
                             delta=event.get("delta", ""))
        elif kind == "response.audio.delta":
            reply = await self._begin(turn)
            item = await self._message_item(reply)
            await self._emit("response.output_audio.delta", **self._where(reply, item),
                             content_index=0, delta=self._audio_out(event))
        elif kind in ("response.function_call_arguments.delta",
                      "response.function_call_arguments.done"):
            await self._call_event(kind, turn, event)
        elif kind == "response.done":
            await self._finish(turn, "completed", event.get("usage"))
        elif kind == "response.cancelled":
            if self.reply is not None and self.reply["turn"] == turn:
                await self._finish(turn, "cancelled")
        elif kind == "conversation.item.created":
            added = {"id": _id("item"), **event.get("item", {}), "status": "completed"}
            await self._emit("conversation.item.added", previous_item_id=None, item=added)
            await self._emit("conversation.item.done", previous_item_id=None, item=added)
        elif kind == "error":
            code = str(event.get("kind", "server_error"))
            await self._emit("error", error={
                "type": "invalid_request_error" if code in ("protocol", "tool", "turn_cap")
                else "server_error", "code": code, "message": event.get("message", ""),
                "param": None, "event_id": None})

    async def _call_event(self, kind: str, turn: int, event: dict[str, Any]) -> None:
        reply = await self._begin(turn)
        call_id = str(event.get("call_id"))
        item = reply["calls"].get(call_id)
        if item is None:
            item = _id("item")
            reply["calls"][call_id] = item
            reply["items"].append({"id": item, "type": "function_call", "call_id": call_id,
                                   "name": event.get("name"), "arguments": "",
                                   "status": "in_progress"})
            await self._emit("response.output_item.added", response_id=reply["id"],
                             output_index=len(reply["items"]) - 1, item=reply["items"][-1])
        where = self._where(reply, item)
        entry = reply["items"][where["output_index"]]
        if kind.endswith(".delta"):
            entry["arguments"] += event.get("delta", "")
            await self._emit(kind, **where, call_id=call_id, delta=event.get("delta", ""))
            return
        entry.update(arguments=event.get("arguments", ""), status="completed")
        await self._emit(kind, **where, call_id=call_id, name=entry["name"],
                         arguments=entry["arguments"])
        await self._emit("response.output_item.done", response_id=reply["id"],
                         output_index=where["output_index"], item=entry)

    async def _finish(self, turn: int, status: str, usage: dict[str, Any] | None = None
                      ) -> None:
        reply = await self._begin(turn)
        item = reply["message"]
        if item is not None:
            where = self._where(reply, item)
            entry = reply["items"][where["output_index"]]
            audio = self.modalities == ["audio"]
            if audio:
                await self._emit("response.output_audio.done", **where, content_index=0)
                await self._emit("response.output_audio_transcript.done", **where,
                                 content_index=0, transcript=reply["transcript"])
            else:
                await self._emit("response.output_text.done", **where, content_index=0,
                                 text=reply["transcript"])
            part = {"type": "audio", "transcript": reply["transcript"]} if audio else \
                {"type": "text", "text": reply["transcript"]}
            entry.update(status="completed" if status == "completed" else "incomplete",
                         content=[{**part, "type": "output_audio" if audio else "output_text"}])
            await self._emit("response.content_part.done", **where, content_index=0,
                             part=part)
            await self._emit("response.output_item.done", response_id=reply["id"],
                             output_index=where["output_index"], item=entry)
        await self._emit("response.done", response=self._response(status, usage))
        self.reply = None

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self.ws.close(code=code, reason=reason)
