"""Telephone calls into voice sessions: Twilio Media Streams and raw G.711 over a WebSocket.

Each route bridges a telephony protocol onto the realtime session (`realtime.run_session`):
the bridge is the socket the session sees, turning the caller's 8 kHz G.711 into the
session's PCM and the session's events into what the telephony side understands. Turn-taking,
barge-in, tools, caps and idle time-outs are the realtime session's own.

- `/v1/telephony/twilio`: Twilio's bidirectional Media Streams (`<Connect><Stream>`). Twilio
  sends `connected`, `start` (with `customParameters`), `media` (base64 8 kHz mu-law), `mark`,
  `dtmf`, `stop`; the server sends `media` (the answer, mu-law), a `mark` after each answer,
  and `clear` when the caller barges in. Twilio cannot set headers on the stream, so the API
  key may come as a `<Parameter name="api_key">` (read from `start`).
- `/v1/telephony/g711?codec=mulaw|alaw`: for other bridges (SIP gateways, Asterisk): binary
  frames of raw 8 kHz G.711 both ways; JSON text frames are the realtime protocol's events
  (audio deltas come as binary frames instead).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import MutableMapping
from typing import Any

from fastapi import APIRouter, WebSocket

from speechllm.serve import g711
from speechllm.serve.codecs import audio_of_delta
from speechllm.serve.realtime import PROTOCOL_CLOSE, Session, run_session
from speechllm.serve.shared import Services, key_ok

router = APIRouter()
log = logging.getLogger("speechllm.serve")
PHONE_RATE = g711.RATE
START_WAIT = 10.0  # seconds for Twilio's `start` event after the socket opens
MAX_PAYLOAD = 8000 * 10  # bytes of G.711 in one message (10 s); the session caps it too
TWILIO_FORMAT = ("audio/x-mulaw", 8000)


class _Bridge:
    """What `run_session` needs of a socket, over the telephony side's real one."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws, self.app = ws, ws.app
        self.headers, self.query_params = ws.headers, ws.query_params
        self.ignored = 0  # telephony messages that were not understood (logged, dropped)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self.ws.close(code=code, reason=reason)


class TwilioBridge(_Bridge):
    def __init__(self, ws: WebSocket, start: dict[str, Any]) -> None:
        super().__init__(ws)
        self.stream_sid = str(start.get("streamSid", ""))
        self.marks = 0

    def _drop(self, why: str) -> None:
        self.ignored += 1
        if self.ignored <= 5:  # a misbehaving bridge must not flood the log
            log.warning("twilio stream %s: ignored %s", self.stream_sid, why)

    async def receive(self) -> MutableMapping[str, Any]:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return message
            text = message.get("text")
            try:
                event = json.loads(text) if text is not None else None
                kind = event["event"] if isinstance(event, dict) else None
            except (json.JSONDecodeError, KeyError, TypeError):
                kind = None
            if kind is None or not isinstance(event, dict):
                self._drop("a frame that is not a JSON event")
                continue
            if kind == "media":
                media = event.get("media")
                payload = media.get("payload") if isinstance(media, dict) else None
                try:
                    data = base64.b64decode(payload or "", validate=True)
                except (binascii.Error, ValueError, TypeError):
                    self._drop("media with a payload that is not base64")
                    continue
                if not data or len(data) > MAX_PAYLOAD:
                    self._drop(f"media of {len(data)} bytes")
                    continue
                return {"type": "websocket.receive", "bytes": g711.decode(data).tobytes()}
            if kind == "stop":
                return {"type": "websocket.disconnect", "code": 1000}
            if kind not in ("mark", "dtmf", "connected", "start"):
                self._drop(f"event {kind!r}")

    async def _say(self, event: str, **data: Any) -> None:
        await self.ws.send_text(json.dumps({"event": event, "streamSid": self.stream_sid,
                                            **data}))

    async def send_text(self, text: str) -> None:
        event = json.loads(text)
        kind = event.get("type")
        if kind == "response.audio.delta":
            payload = base64.b64encode(g711.encode_audio(audio_of_delta(event))).decode()
            await self._say("media", media={"payload": payload})
        elif kind == "response.done":
            self.marks += 1  # Twilio echoes it once the answer has played
            await self._say("mark", mark={"name": f"answer-{event.get('turn', self.marks)}"})
        elif kind in ("input_audio_buffer.speech_started", "response.cancelled"):
            await self._say("clear")  # the caller talks: drop what Twilio still has queued
        elif kind == "error":
            log.warning("twilio stream %s: %s", self.stream_sid, event.get("message"))


class G711Bridge(_Bridge):
    def __init__(self, ws: WebSocket, law: g711.Law) -> None:
        super().__init__(ws)
        self.law = law

    async def receive(self) -> MutableMapping[str, Any]:
        message = await self.ws.receive()
        data = message.get("bytes")
        if message["type"] == "websocket.receive" and data is not None:
            # a frame over the session's cap is refused there, with its error event
            return {"type": "websocket.receive", "bytes": g711.decode(data, self.law).tobytes()}
        return message

    async def send_text(self, text: str) -> None:
        event = json.loads(text)
        if event.get("type") == "response.audio.delta":
            await self.ws.send_bytes(g711.encode_audio(audio_of_delta(event), self.law))
            event = {k: v for k, v in event.items() if k != "delta"}
            event["sample_rate"], event["codec"] = PHONE_RATE, self.law
        await self.ws.send_text(json.dumps(event))


async def _twilio_start(ws: WebSocket) -> dict[str, Any] | None:
    """Twilio's `start` event (after `connected`), or None if something else comes first."""
    try:
        async with asyncio.timeout(START_WAIT):
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return None
                event = json.loads(message.get("text") or "null")
                if isinstance(event, dict) and event.get("event") == "connected":
                    continue
                if isinstance(event, dict) and event.get("event") == "start" and \
                        isinstance(event.get("start"), dict):
                    return dict(event["start"])
                return None
    except (TimeoutError, json.JSONDecodeError):
        return None


@router.websocket("/v1/telephony/twilio")
async def twilio(ws: WebSocket) -> None:
    s: Services = ws.app.state.services
    await ws.accept()  # Twilio's key comes inside the stream, so the check is after the open
    start = await _twilio_start(ws)
    if start is None:
        await ws.close(code=PROTOCOL_CLOSE, reason="expected Twilio's connected and start events")
        return
    custom = start.get("customParameters")
    key = (custom.get("api_key") if isinstance(custom, dict) else None) or \
        ws.query_params.get("api_key")
    if not key_ok(s.settings, ws.headers.get("authorization"), key):
        await ws.close(code=4401, reason="missing or wrong API key")
        return
    fmt = start.get("mediaFormat") or {}
    got = (fmt.get("encoding", TWILIO_FORMAT[0]), fmt.get("sampleRate", TWILIO_FORMAT[1]))
    if got != TWILIO_FORMAT:
        await ws.close(code=PROTOCOL_CLOSE, reason=f"media format {got}: only 8 kHz mu-law")
        return
    bridge = TwilioBridge(ws, start)
    await run_session(bridge, Session(input_rate=PHONE_RATE))  # type: ignore[arg-type]


@router.websocket("/v1/telephony/g711")
async def g711_stream(ws: WebSocket) -> None:
    s: Services = ws.app.state.services
    if not key_ok(s.settings, ws.headers.get("authorization"), ws.query_params.get("api_key")):
        await ws.close(code=4401, reason="missing or wrong API key")
        return
    law = ws.query_params.get("codec", "mulaw")
    if law not in ("mulaw", "alaw"):
        await ws.close(code=PROTOCOL_CLOSE, reason="codec must be mulaw or alaw")
        return
    await ws.accept()
    bridge = G711Bridge(ws, "alaw" if law == "alaw" else "mulaw")
    await run_session(bridge, Session(input_rate=PHONE_RATE))  # type: ignore[arg-type]

