"""Realtime voice sessions over a WebSocket (`/v1/realtime`); the protocol is in
docs/serving.md.

The client streams 16-bit PCM; the server's VAD finds where the user's turn starts and ends,
the served `SpeechLM` streams its answer back (transcript, text deltas, audio chunks, then the
turn's timings), and speech from the user during an answer cancels it (barge-in). Turns are not
capped at 30 s: a turn may last up to `max_audio_seconds`. Each session is its own task, so
one failing session never touches another.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from speechllm.audio import Audio
from speechllm.serve.app import Services, key_ok
from speechllm.serve.openai_routes import timings_json
from speechllm.speechlm import (
    AudioChunk,
    Done,
    ErrorEvent,
    Message,
    Request,
    TextDelta,
    TranscriptEvent,
)
from speechllm.tts.base import TTS

router = APIRouter()
log = logging.getLogger("speechllm.serve")
RATE = 16000  # the VAD's and the models' rate
WINDOW = 512 / RATE  # one VAD decision per 32 ms
PREROLL = 0.3  # seconds kept before the detected onset, so the first syllable is not cut
MIN_SPEECH = 0.1  # seconds of speech before a turn counts as started (and barges in)
IDLE_CLOSE = 4408  # close code for an idle session
PROTOCOL_CLOSE = 4400  # close code for a client that breaks the protocol


@dataclass
class Session:
    id: str = field(default_factory=lambda: f"sess_{uuid.uuid4().hex[:16]}")
    input_rate: int = RATE
    instructions: str | None = None
    want_audio: bool = True
    max_tokens: int = 256  # longest answer per turn
    server_vad: bool = True  # False: push-to-talk, the client commits each turn
    history: tuple[Message, ...] = ()
    turns: int = 0


class Turns:
    """Buffers audio and decides where turns start and end (server VAD, or client commits)."""

    def __init__(self, services: Services, session: Session) -> None:
        self.s, self.session = services, session
        self.vad = services.vad.stream()
        self.samples: list[np.ndarray] = []  # everything since the last turn, 16 kHz
        self.kept = 0  # samples in self.samples
        self.in_speech = False
        self.speech_run = 0.0
        self.silence_run = 0.0
        self.onset = 0.0  # seconds into the buffer where speech began
        self.resampler: Any = None

    def to_16k(self, pcm: np.ndarray) -> np.ndarray:
        if self.session.input_rate == RATE:
            return pcm
        if self.resampler is None:
            self.resampler = soxr.ResampleStream(self.session.input_rate, RATE, 1,
                                                 dtype="float32")
        out: np.ndarray = self.resampler.resample_chunk(pcm)
        return out

    def feed(self, pcm: np.ndarray) -> list[str]:
        """Add 16 kHz samples; the VAD events they cause ("started", "stopped")."""
        self.samples.append(pcm)
        self.kept += len(pcm)
        if not self.session.server_vad:
            return []
        events = []
        for p in self.vad.feed(pcm):
            if not self.in_speech:
                self.speech_run = self.speech_run + WINDOW if p >= self.s.settings.vad_threshold \
                    else 0.0
                if self.speech_run >= MIN_SPEECH:
                    self.in_speech, self.silence_run = True, 0.0
                    self.onset = max(0.0, self.kept / RATE - self.speech_run - PREROLL)
                    events.append("started")
            else:
                self.silence_run = self.silence_run + WINDOW if p < \
                    self.s.settings.vad_threshold - 0.15 else 0.0
                long_turn = self.kept / RATE - self.onset >= self.s.settings.max_audio_seconds
                if self.silence_run >= self.s.settings.end_silence or long_turn:
                    events.append("stopped")
                    self.in_speech = False
                    self.speech_run = 0.0
        if not self.in_speech and not events and self.kept > RATE * 2:
            # between turns keep only the last second (the pre-roll needs a little)
            tail = np.concatenate(self.samples)[-RATE:]
            self.samples, self.kept = [tail], len(tail)
        return events

    def take(self) -> Audio | None:
        """The turn's audio (from the onset when the VAD found one), and a fresh buffer."""
        if not self.samples:
            return None
        audio = np.concatenate(self.samples)
        if self.session.server_vad:
            audio = audio[int(self.onset * RATE):]
        self.samples, self.kept, self.onset = [], 0, 0.0
        return Audio(audio, RATE) if len(audio) else None

    def clear(self) -> None:
        self.samples, self.kept, self.onset = [], 0, 0.0
        self.in_speech, self.speech_run, self.silence_run = False, 0.0, 0.0


async def _send(ws: WebSocket, event_type: str, **data: Any) -> None:
    await ws.send_text(json.dumps({"type": event_type, **data}))


async def _answer(ws: WebSocket, s: Services, session: Session, audio: Audio,
                  ended_at: float, vad_wait: float) -> None:
    """One response: stream the model's events to the client."""
    session.turns += 1
    turn = session.turns
    request = Request(audio=audio, system=session.instructions, history=session.history,
                      want_audio=session.want_audio, max_tokens=session.max_tokens)
    spoke = False
    queued_at = time.perf_counter()
    async with s.gate.turn():
        waited = time.perf_counter() - queued_at
        async for event in s.model.stream(request):
            if isinstance(event, TranscriptEvent):
                await _send(ws, "transcript", turn=turn, text=event.text)
            elif isinstance(event, TextDelta):
                await _send(ws, "response.text.delta", turn=turn, delta=event.text)
            elif isinstance(event, AudioChunk) and session.want_audio:
                spoke = True
                await _send_audio(ws, turn, event.audio, event.text)
            elif isinstance(event, ErrorEvent):
                await _send(ws, "error", turn=turn, message=event.message, kind=event.kind)
                return
            elif isinstance(event, Done):
                answer = event.response
                extra_tts = 0.0
                if session.want_audio and not spoke and s.tts is not None \
                        and answer.text.strip():
                    extra_tts = await _speak(ws, s, s.tts, turn, answer.text)
                session.history = answer.history
                t = timings_json(answer.timings)
                await _send(ws, "response.done", turn=turn, text=answer.text,
                            transcript=answer.transcript, timings=t, queue_wait=waited,
                            endpoint_wait=vad_wait, tts_after=extra_tts,
                            since_speech_end=time.perf_counter() - ended_at)


async def _send_audio(ws: WebSocket, turn: int, audio: Audio, text: str) -> None:
    await _send(ws, "response.audio.delta", turn=turn, sample_rate=audio.sample_rate,
                delta=base64.b64encode(audio.to_pcm16()).decode(), text=text)


async def _speak(ws: WebSocket, s: Services, tts: TTS, turn: int, text: str) -> float:
    """The server's TTS for models that answer in text; returns the seconds it took."""
    start = time.perf_counter()
    parts = iter(tts.stream(text))
    loop = asyncio.get_running_loop()
    while (part := await loop.run_in_executor(s.gate.pool, next, parts, None)) is not None:
        await _send_audio(ws, turn, part, text)
    return time.perf_counter() - start


@router.websocket("/v1/realtime")
async def realtime(ws: WebSocket) -> None:
    s: Services = ws.app.state.services
    if not key_ok(s.settings, ws.headers.get("authorization"), ws.query_params.get("api_key")):
        await ws.close(code=4401, reason="missing or wrong API key")
        return
    await ws.accept()
    session = Session()
    turns = Turns(s, session)
    s.sessions += 1
    reply: asyncio.Task[None] | None = None
    idle = s.settings.idle_timeout

    def reply_running() -> bool:
        return reply is not None and not reply.done()

    async def cancel_reply(reason: str) -> None:
        nonlocal reply
        if reply_running():
            assert reply is not None
            reply.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reply
            await _send(ws, "response.cancelled", turn=session.turns, reason=reason)
        reply = None

    def start_reply(audio: Audio | None, vad_wait: float) -> None:
        nonlocal reply
        if audio is None or audio.duration < MIN_SPEECH:
            return
        reply = asyncio.create_task(_answer(ws, s, session, audio, time.perf_counter(),
                                            vad_wait))
        reply.add_done_callback(_log_failure)

    try:
        await _send(ws, "session.created", session={
            "id": session.id, "input_sample_rate": session.input_rate,
            "turn_detection": "server_vad", "idle_timeout": idle,
            "max_turn_seconds": s.settings.max_audio_seconds})
        while True:
            try:
                message = await asyncio.wait_for(ws.receive(), timeout=idle)
            except TimeoutError:
                if reply_running():  # the server is still answering: not idle
                    continue
                await _send(ws, "error", message=f"idle for {idle:g} s; closing", kind="idle")
                await ws.close(code=IDLE_CLOSE, reason="idle timeout")
                return
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                data = message["bytes"]
                if len(data) % 2:
                    await _send(ws, "error", message="audio frames must be 16-bit PCM (an "
                                "even number of bytes)", kind="protocol")
                    continue
                pcm = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
                for event in turns.feed(turns.to_16k(pcm)):
                    if event == "started":  # the client stops playback at once
                        await _send(ws, "input_audio_buffer.speech_started")
                        await cancel_reply("barge-in")
                    else:
                        await _send(ws, "input_audio_buffer.speech_stopped")
                        start_reply(turns.take(), s.settings.end_silence)
                continue
            try:
                command = json.loads(message.get("text") or "")
                kind = command["type"]
            except (json.JSONDecodeError, KeyError, TypeError):
                await _send(ws, "error", message="text frames must be JSON objects with a "
                            "'type'", kind="protocol")
                continue
            if kind == "session.update":
                problem = _update(session, command.get("session"))
                if problem:
                    await _send(ws, "error", message=problem, kind="protocol")
                else:
                    turns.resampler = None
                    await _send(ws, "session.updated", session={
                        "id": session.id, "input_sample_rate": session.input_rate,
                        "turn_detection": "server_vad" if session.server_vad else "none",
                        "want_audio": session.want_audio})
            elif kind == "input_audio_buffer.commit":
                await cancel_reply("new turn")
                start_reply(turns.take(), 0.0)
            elif kind == "input_audio_buffer.clear":
                turns.clear()
            elif kind == "response.cancel":
                await cancel_reply("client")
            else:
                await _send(ws, "error", message=f"unknown message type {kind!r}",
                            kind="protocol")
    except WebSocketDisconnect:
        pass
    except Exception as exc:  # this session ends; the server and other sessions go on
        log.exception("voice session %s failed", session.id)
        with contextlib.suppress(Exception):
            await _send(ws, "error", message=f"session failed: {exc}", kind=type(exc).__name__)
            await ws.close(code=1011)
    finally:
        if reply is not None and not reply.done():
            reply.cancel()
        s.sessions -= 1


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a voice turn failed: %r", task.exception())


def _update(session: Session, data: Any) -> str | None:
    """Apply a session.update; the problem with it, if any."""
    if not isinstance(data, dict):
        return "session.update needs a 'session' object"
    rate = data.get("input_sample_rate", session.input_rate)
    if not isinstance(rate, int) or not 8000 <= rate <= 48000:
        return "input_sample_rate must be an integer from 8000 to 48000"
    detection = data.get("turn_detection", "server_vad" if session.server_vad else "none")
    if detection not in ("server_vad", "none"):
        return "turn_detection must be 'server_vad' or 'none'"
    instructions = data.get("instructions", session.instructions)
    if instructions is not None and not isinstance(instructions, str):
        return "instructions must be a string"
    limit = data.get("max_tokens", session.max_tokens)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        return "max_tokens must be a positive integer"
    session.max_tokens = limit
    session.input_rate = rate
    session.server_vad = detection == "server_vad"
    session.instructions = instructions or None
    session.want_audio = bool(data.get("want_audio", session.want_audio))
    return None
