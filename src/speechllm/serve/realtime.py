"""Realtime voice sessions over a WebSocket (`/v1/realtime`); the protocol is in
docs/serving.md.

The client streams 16-bit PCM; the server's VAD finds where the user's turn starts and ends,
the served `SpeechLM` streams its answer back (transcript, text deltas, audio chunks, then the
turn's timings), and speech from the user during an answer cancels it (barge-in). Turns are not
capped at 30 s: a turn may last up to `max_audio_seconds`. Each session is its own task, so
one failing session never touches another.

Speculation: after a short pause (`speculate_after`, 0.03 s) the answer starts at once, into a
held buffer. The turn ends after `end_silence` when it sounds and reads finished, or after
`patient_silence` when the end-of-turn model or the transcript's last word says it is not
("What is the capital of ..."); the held events are then sent and the answer goes on live. If
the user speaks again first, the held answer is thrown away unseen: the assistant never
answers a fragment, and a finished turn's answer is already well under way when it ends.

Barge-in: speech heard while the assistant answers (or its audio still plays) is transcribed
by the server's `BargeInJudge` before it counts. Only an interruption ("wait, stop", a new
question) cancels the answer and becomes the user's next turn; a backchannel ("uh-huh"), the
assistant's own voice coming back through the microphone, or an unclear word is reported as
`input_audio_buffer.speech_ignored` and the answer goes on. `speech_started` is sent only for
speech that is a turn, so clients that stop playback on it (as OpenAI's do) need no change.

Long because one session's state (the turn buffer, the held answer, the playback timeline and
the overlap being judged) is read and changed by each of its parts; the parts are classes of
their own (`Turns`, `Outbox`, `Overlap`) and the decisions they make live in speechllm.turn.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import soxr
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from speechllm.audio import Audio
from speechllm.serve.settings import TurnTiming
from speechllm.serve.shared import Services, key_ok, timings_json
from speechllm.speechlm import (
    LANGUAGE,
    AudioChunk,
    Done,
    ErrorEvent,
    Message,
    Request,
    TextDelta,
    ToolCallEvent,
    TranscriptEvent,
    Usage,
)
from speechllm.toolbox import close_pending, output_text, pending_calls
from speechllm.tools import (
    Tool,
    ToolCallDelta,
    ToolChoice,
    ToolError,
    check_choice,
    fit_output,
    tool_choice_of,
    tools_of,
)
from speechllm.tts.base import TTS
from speechllm.turn.barge_in import ECHO_PATH, Verdict
from speechllm.turn.echo import EchoPath
from speechllm.turn.text import looks_unfinished

router = APIRouter()
log = logging.getLogger("speechllm.serve")
RATE = 16000  # the VAD's and the models' rate
WINDOW = 512 / RATE  # one VAD decision per 32 ms
PREROLL = 0.3  # seconds kept before the detected onset, so the first syllable is not cut
MIN_SPEECH = 0.1  # seconds of speech before a turn counts as started (and barges in)
# Speech over the answer is judged at its first pause of JUDGE_PAUSE (not `speculate_after`,
# one VAD window: "wait, | stop" would be judged on "wait" alone), or once it has gone on
# JUDGE_AFTER without one: long enough for "wait, stop" to be words, short enough to stop
# promptly.
JUDGE_AFTER = 0.6
JUDGE_PAUSE = 0.2
# Seconds after the estimated end of the answer's playback during which speech is still
# judged: the client's buffers and the room's echo lag the server's clock.
ECHO_TAIL = 0.5
# Seconds by which the echo of what the server reckons is playing may come back late (the
# client's buffers, the room, the way back): the words of clauses played that long before a
# clip still count as its possible echo.
ECHO_LAG = 2.0
MAX_ECHO_REFERENCE = 120.0  # seconds of an answer's audio kept to recognise its echo
# Smart Turn's probability below which a paused turn waits `patient_silence`. Not its own
# 0.5: on synthetic speech it swings across 0.5 with 0.1 s more or less trailing silence
# (0.43 to 0.92 on one espeak question), so only a confident "unfinished" holds the turn.
SOUNDS_UNFINISHED = 0.2
CANCEL_WAIT = 0.2  # seconds a cancelled answer gets to stop before the session goes on
MAX_FRAME_SECONDS = 10.0  # longest audio in one binary frame (the VAD runs on the event loop)
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
    timing: TurnTiming = field(default_factory=TurnTiming)  # the server's, unless asked
    defaults: TurnTiming = field(default_factory=TurnTiming)  # the server's own
    heard: Audio | None = None  # a turn awaiting response.create (auto_respond off)
    history: tuple[Message, ...] = ()
    tools: tuple[Tool, ...] = ()  # functions the assistant may call (the client runs them)
    tool_choice: ToolChoice = "auto"
    language: str | None = None  # what the user speaks, told to the recogniser (None: detect)
    typed: str | None = None  # a typed user message waiting for response.create
    turns: int = 0
    speculations_dropped: int = 0  # held answers thrown away because the user went on


class Turns:
    """Buffers audio and decides where turns start and end (server VAD, or client commits)."""

    def __init__(self, services: Services, session: Session) -> None:
        self.s, self.session = services, session
        self.vad = services.vad.stream()
        self.samples: list[np.ndarray] = []  # everything since the last turn, 16 kHz
        self.kept = 0  # samples in self.samples
        self.raw: list[np.ndarray] = []  # the same, as heard: with the answer's echo in it
        self.in_speech = False
        self.speech_run = 0.0
        self.silence_run = 0.0
        self.onset = 0.0  # seconds into the buffer where speech began
        self.paused = False  # `speculate_after` of silence has passed inside the turn
        self.needed = session.timing.end_silence  # silence that ends the turn now
        self.speech_seconds = 0.0  # speech heard in this turn
        self.hold = False  # keep the whole buffer between turns (speech awaiting a verdict)
        self.full = False  # a push-to-talk turn reached the cap (later audio is dropped)
        self.received = 0  # samples heard since the session began
        self.echo: tuple[EchoPath, Outbox] | None = None  # the answer's echo, once fitted
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
        """Add 16 kHz samples; the VAD events they cause: "started" (a turn began), "paused"
        (`speculate_after` of silence inside a turn), "resumed" (speech again after a pause)
        and "stopped" (the turn is over: `needed` seconds of silence, or the turn cap)."""
        self.raw.append(pcm)
        if self.echo is not None:
            path, out = self.echo
            pcm = path.cancel(pcm, self.received, out.reference())
        if not self.session.server_vad:  # push-to-talk: the turn cap holds here too
            room = int(self.s.settings.max_audio_seconds * RATE) - self.kept
            capped = len(pcm) > room and not self.full
            if len(pcm) > room:
                self.raw[-1] = pcm = pcm[:max(0, room)]
                self.full = True
        self.received += len(pcm)
        self.samples.append(pcm)
        self.kept += len(pcm)
        if not self.session.server_vad:
            return ["full"] if capped else []
        events = []
        settings, timing = self.s.settings, self.session.timing
        for p in self.vad.feed(pcm):
            if not self.in_speech:
                self.speech_run = self.speech_run + WINDOW if p >= timing.threshold \
                    else 0.0
                if self.speech_run >= MIN_SPEECH:
                    self.in_speech, self.silence_run, self.paused = True, 0.0, False
                    self.speech_seconds = self.speech_run
                    self.needed = timing.end_silence
                    self.onset = max(0.0, self.kept / RATE - self.speech_run - timing.preroll)
                    events.append("started")
                continue
            if p < timing.threshold - timing.hysteresis:
                self.silence_run += WINDOW
            elif p >= timing.threshold:  # speech again (between the two: undecided)
                self.speech_seconds += WINDOW
                if self.paused:
                    events.append("resumed")
                self.silence_run, self.paused = 0.0, False
                self.needed = timing.end_silence
            if not self.paused and self.silence_run >= max(timing.speculate_after, WINDOW):
                self.paused = True
                if timing.speculate_after > 0:  # until a verdict says the turn is over
                    self.needed = timing.patient_silence
                events.append("paused")
            long_turn = self.kept / RATE - self.onset >= settings.max_audio_seconds
            if self.silence_run >= self.needed or long_turn:
                events.append("stopped")
                self.in_speech, self.paused = False, False
                self.speech_run = 0.0
        if not self.in_speech and not events and not self.hold and self.kept > RATE * 2:
            # between turns keep only the last second (the pre-roll needs a little)
            tail = np.concatenate(self.samples)[-RATE:]
            self.samples, self.kept = [tail], len(tail)
            self.raw = [np.concatenate(self.raw)[-RATE:]]
        return events

    def settle(self, finished: bool | None) -> bool:
        """Apply the verdict on a paused turn (None: not known yet): it now needs
        `end_silence` if finished, else `patient_silence`. True when that has passed: the
        turn is over, its state reset as on "stopped"."""
        timing = self.session.timing
        self.needed = timing.end_silence if finished else timing.patient_silence
        if finished and self.silence_run >= timing.end_silence:
            self.in_speech = self.paused = False
            self.speech_run = 0.0
            return True
        return False

    def peek(self) -> Audio | None:
        """The turn's audio so far (from the onset), leaving the buffer as it is, padded
        with silence as if `end_silence` had passed: the recogniser then gets what it
        would get once the turn ends (the VAD trims both alike), not a clip cut short."""
        if not self.samples:
            return None
        joined = np.concatenate(self.samples)
        self.samples = [joined]  # one piece: cheap to peek again
        audio = joined[int(self.onset * RATE):]
        if not len(audio):
            return None
        pad = max(0.0, self.session.timing.end_silence - self.silence_run)
        return Audio(np.concatenate([audio, np.zeros(int(pad * RATE), np.float32)]), RATE)

    def clean(self) -> None:
        """Take the fitted echo out of the buffered audio too (it was heard before the fit)."""
        if self.echo is None or not self.samples:
            return
        path, out = self.echo
        heard = np.concatenate(self.raw)  # from the raw audio: an older fit may be off
        self.raw = [heard]
        self.samples = [path.cancel(heard, self.received - self.kept, out.reference())]

    def since(self, start: float, as_heard: bool = False) -> Audio:
        """The buffer's audio from `start` seconds in: with the echo taken out, or as heard
        (echo and all)."""
        pieces = self.raw if as_heard else self.samples
        joined = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        pieces[:] = [joined]  # one piece: cheap to read again
        return Audio(joined[int(max(0.0, start) * RATE):], RATE)

    def take(self) -> Audio | None:
        """The turn's audio (from the onset when the VAD found one), and a fresh buffer."""
        if not self.samples:
            return None
        audio = np.concatenate(self.samples)
        if self.session.server_vad:
            audio = audio[int(self.onset * RATE):]
        self.samples, self.raw, self.kept, self.onset = [], [], 0, 0.0
        self.full = False
        return Audio(audio, RATE) if len(audio) else None

    def clear(self) -> None:
        self.hold = self.full = False
        self.samples, self.raw, self.kept, self.onset = [], [], 0, 0.0
        self.in_speech, self.speech_run, self.silence_run = False, 0.0, 0.0
        self.paused = False


async def _send(ws: WebSocket, event_type: str, **data: Any) -> None:
    await ws.send_text(json.dumps({"type": event_type, **data}))


class Outbox:
    """A reply's way out: straight to the client, or held until the turn is known to be over
    (a speculative reply), then flushed in order and live from there on."""

    def __init__(self, ws: WebSocket, held: bool) -> None:
        self.ws, self.held = ws, held
        self.buffer: list[tuple[str, dict[str, Any]]] = []
        self.released = asyncio.Event()
        self.released_at = time.perf_counter()  # when the client started getting events
        self.transcript: str | None = None  # what the reply heard, once it has
        self.heard = asyncio.Event()
        # (start, end, text) of each chunk on the client's playback timeline (perf_counter)
        self.played: list[tuple[float, float, str]] = []
        self.spoken: list[np.ndarray] = []  # the client's playback, 16 kHz (echo reference)
        self._reference: np.ndarray | None = None
        self.pending: list[tuple[np.ndarray, str]] = []  # audio held, not yet sent
        self.started_playing = 0.0  # when the client started playing the answer
        self.playing_until = 0.0  # when the client will have played what it was sent
        if not held:
            self.released.set()

    async def send(self, event_type: str, **data: Any) -> None:
        if event_type == "transcript":
            self.transcript = data.get("text", "")
            self.heard.set()
        if self.held:
            self.buffer.append((event_type, data))
        else:
            await _send(self.ws, event_type, **data)

    async def send_audio(self, turn: int, audio: Audio, text: str) -> None:
        """Send (or hold) a chunk of the answer's speech, noting what it says and when the
        client will play it: speech heard meanwhile may be its echo."""
        samples = audio.resample(RATE).samples
        if self.held:
            self.pending.append((samples, text))
        else:
            self._play(samples, text)
        await self.send("response.audio.delta", turn=turn, **_audio_delta(audio, text))

    def _play(self, samples: np.ndarray, text: str) -> None:
        """Place a chunk on the client's playback timeline: it starts when it arrives or when
        the one before ends, whichever is later, so a stalled answer leaves a silent gap in
        the reference just as in the loudspeaker, and one echo delay holds across it."""
        now = time.perf_counter()
        if not self.spoken:
            self.started_playing = now
        start = max(now, self.playing_until)
        self.playing_until = start + len(samples) / RATE
        self.played.append((start, self.playing_until, text))
        at = round((start - self.started_playing) * RATE)
        length = sum(map(len, self.spoken))
        if at + len(samples) > MAX_ECHO_REFERENCE * RATE:
            return
        if at > length:
            self.spoken.append(np.zeros(at - length, np.float32))
        self.spoken.append(samples)
        self._reference = None

    def said_between(self, first: float, last: float) -> str:
        """The text of what the client was playing between two times (perf_counter), clause
        by clause: the words an echo heard then can hold. An answer's earlier clauses are
        left out, so a follow-up that repeats them ("the capital of Spain?" after "The
        capital of France is Paris. ...") is not taken for its echo."""
        texts: list[str] = []
        for start, end, text in self.played:
            if start < last and end > first and (not texts or texts[-1] != text):
                texts.append(text)
        return " ".join(texts)

    def reference(self) -> np.ndarray:
        """The answer's audio as the client plays it (16 kHz, stalls as silence), in one
        array."""
        if self._reference is None:
            self._reference = (np.concatenate(self.spoken) if self.spoken
                               else np.zeros(0, np.float32))
        return self._reference

    async def release(self) -> None:
        for samples, text in self.pending:  # sent now, back to back
            self._play(samples, text)
        self.pending = []
        while self.buffer:  # events may arrive while earlier ones are sent
            event_type, data = self.buffer.pop(0)
            await _send(self.ws, event_type, **data)
        self.held = False
        self.released_at = time.perf_counter()
        self.released.set()


@dataclass
class Reply:
    """One answer in flight, and what is known of the turn it answers."""

    task: asyncio.Task[None]
    out: Outbox
    turn: int
    sounds_finished: float | None = None  # the end-of-turn model's probability


@dataclass
class Overlap:
    """Speech heard over the assistant's answer, not yet known to be an interruption."""

    start: float  # seconds into the turn buffer where it began
    judged_at: float  # seconds into the buffer up to which it has been judged
    judged_speech: float = 0.0  # the turn's speech seconds when last judged
    clip_start: float = 0.0  # where the clip being judged starts in the buffer
    clip_first: int = 0  # the stream's sample number of the clip's first sample
    settled: float | None = None  # up to here (buffer seconds) it was backchannel or echo
    judging: asyncio.Task[None] | None = None
    ended: bool = False  # the VAD heard it stop
    cut: bool = False  # its last clip, judged unclear, was cut while the user went on talking


async def _answer(ws: WebSocket, s: Services, session: Session, audio: Audio | None,
                  out: Outbox, turn: int, ended_at: float, text: str | None = None) -> None:
    """One response: stream the model's events to the client (held while speculative). With
    neither audio nor text it answers from the tool results that end the history."""
    # the user spoke while calls were pending: they are answered "no result", for good
    fresh = audio is not None or text is not None
    history = close_pending(session.history) if fresh else session.history
    request = Request(audio=audio, text=text, system=session.instructions, history=history,
                      want_audio=session.want_audio, max_tokens=session.max_tokens,
                      tools=session.tools, tool_choice=session.tool_choice,
                      language=session.language)
    spoke = False
    done: Done | None = None
    started = queued_at = time.perf_counter()
    async with s.gate.turn():
        waited = time.perf_counter() - queued_at
        async for event in s.model.stream(request):
            if isinstance(event, TranscriptEvent):
                await out.send("transcript", turn=turn, text=event.text)
            elif isinstance(event, TextDelta):
                await out.send("response.text.delta", turn=turn, delta=event.text)
            elif isinstance(event, ToolCallDelta):
                await out.send("response.function_call_arguments.delta", turn=turn,
                               call_id=event.id, name=event.name, delta=event.arguments)
            elif isinstance(event, ToolCallEvent):
                await out.send("response.function_call_arguments.done", turn=turn,
                               call_id=event.call.id, name=event.call.name,
                               arguments=event.call.arguments)
            elif isinstance(event, AudioChunk) and session.want_audio:
                spoke = True
                await out.send_audio(turn, event.audio, event.text)
            elif isinstance(event, ErrorEvent):
                out.heard.set()  # nothing more will be heard: the turn may end on silence
                await out.send("error", turn=turn, message=event.message, kind=event.kind)
                return
            elif isinstance(event, Done):
                done = event
    if done is None:
        return
    # a speculative answer waits (outside the gate) for its turn to end, and only then joins
    # the history
    await out.released.wait()
    answer = done.response
    extra_tts = 0.0
    if session.want_audio and not spoke and s.tts is not None and answer.text.strip():
        extra_tts = await _speak(out, s, s.tts, turn, answer.text)
    session.history = answer.history
    commit = max(out.released_at, started)
    for span in answer.timings.spans:
        s.record(span.name, span.end - span.start)
    s.record("endpoint", commit - ended_at)
    if answer.timings.ttfa is not None:  # from the end of the user's speech to the client
        s.record("ttfa_after_speech", max(commit, started + answer.timings.ttfa) - ended_at)
    await _send(ws, "response.done", turn=turn, text=answer.text,
                transcript=answer.transcript, timings=timings_json(answer.timings),
                tool_calls=[c.to_openai() for c in answer.tool_calls],
                usage=(answer.usage or Usage()).to_openai(), queue_wait=waited,
                endpoint_wait=commit - ended_at, tts_after=extra_tts,
                since_speech_end=time.perf_counter() - ended_at,
                # speculation: how far ahead of the turn's end the answer began
                speculative=started < commit, started_before_end=round(commit - started, 4),
                speculations_dropped=session.speculations_dropped)


def _audio_delta(audio: Audio, text: str) -> dict[str, Any]:
    """A `response.audio.delta` event's fields for one chunk of speech."""
    return {"sample_rate": audio.sample_rate,
            "delta": base64.b64encode(audio.to_pcm16()).decode(), "text": text}


async def _speak(out: Outbox, s: Services, tts: TTS, turn: int, text: str) -> float:
    """The server's TTS for models that answer in text; returns the seconds it took."""
    start = time.perf_counter()
    parts = iter(tts.stream(text))
    loop = asyncio.get_running_loop()
    while (part := await loop.run_in_executor(s.gate.pool, next, parts, None)) is not None:
        await out.send_audio(turn, part, text)
    return time.perf_counter() - start


@router.websocket("/v1/realtime")
async def realtime(ws: WebSocket) -> None:
    s: Services = ws.app.state.services
    key = ws.query_params.get("api_key") or _subprotocol_key(ws)
    if not key_ok(s.settings, ws.headers.get("authorization"), key):
        await ws.close(code=4401, reason="missing or wrong API key")
        return
    from speechllm.serve.openai_realtime import OpenAIRealtimeBridge, wants_openai

    if wants_openai(ws):  # the OpenAI Realtime API's protocol (the official clients)
        await ws.accept(subprotocol=_subprotocol(ws))
        bridge = OpenAIRealtimeBridge(ws, s.settings.model_id)
        await run_session(bridge, Session(input_rate=bridge.input[1]))  # type: ignore[arg-type]
        return
    await ws.accept()
    await run_session(ws)


def _subprotocol_key(ws: WebSocket) -> str | None:
    """The key a browser's OpenAI client offers as the `openai-insecure-api-key.KEY`
    subprotocol (browsers cannot set headers on a WebSocket)."""
    for offered in ws.headers.get("sec-websocket-protocol", "").split(","):
        name = offered.strip()
        if name.startswith("openai-insecure-api-key."):
            return name.removeprefix("openai-insecure-api-key.")
    return None


def _subprotocol(ws: WebSocket) -> str | None:
    """Echo the `realtime` subprotocol a browser client offers (its key rides beside it)."""
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")]
    return "realtime" if "realtime" in offered else None


async def run_session(ws: WebSocket, session: Session | None = None) -> None:
    """One voice session on an accepted socket, speaking this module's protocol. Bridges to
    other protocols (telephony) pass a socket-like object that translates (the session uses
    `receive`, `send_text`, `close` and `app`)."""
    s: Services = ws.app.state.services
    session = session or Session()
    session.timing = session.defaults = s.settings.timing()
    turns = Turns(s, session)
    s.sessions += 1
    reply: Reply | None = None
    overlap: Overlap | None = None
    watchers: set[asyncio.Task[None]] = set()
    idle = s.settings.idle_timeout
    loop = asyncio.get_running_loop()

    answers: set[asyncio.Task[None]] = set()  # every answer still running, current or not

    def reply_running() -> bool:
        return bool(answers)

    async def cancel_reply(reason: str) -> None:
        """Stop the reply in flight; a held (speculative) one vanishes without a word."""
        nonlocal reply
        stopping = reply
        if stopping is not None and not stopping.task.done():
            stopping.task.cancel()
            if stopping.out.held:
                # unseen by the client: no need to wait for its worker (an ASR pass cannot
                # stop half way) before listening on
                reply = None
                return
            # let it stop, but never wait on it for long: a worker thread (an ASR pass) cannot
            # stop half way, and the session's input must go on meanwhile
            await asyncio.wait({stopping.task}, timeout=CANCEL_WAIT)
            await _send(ws, "response.cancelled", turn=stopping.turn, reason=reason)
        # while it stopped, the session may have gone on to start the next turn's reply
        if reply is stopping:
            reply = None

    def assistant_speaking() -> bool:
        """Whether the answer is under way, or its audio may still be playing."""
        if s.judge is None or reply is None or reply.out.held:
            return False
        return not reply.task.done() or time.perf_counter() < reply.out.playing_until + ECHO_TAIL

    def watch(task: asyncio.Task[None]) -> None:
        watchers.add(task)
        task.add_done_callback(watchers.discard)
        task.add_done_callback(_log_failure)

    def paused_to_judge() -> bool:
        return turns.paused and turns.silence_run >= JUDGE_PAUSE

    def judge_if_due(at_pause: bool) -> None:
        """Judge the overlapping speech heard since the last verdict, at a pause or once
        `JUDGE_AFTER` of it has built up; drop it once it has ended and all was ignored."""
        nonlocal overlap
        ov = overlap
        if ov is None or ov.judging is not None:
            return
        unjudged = turns.speech_seconds - ov.judged_speech
        if ov.cut and (at_pause or ov.ended):
            unjudged = max(unjudged, MIN_SPEECH)  # however little followed, judge it whole
        if ov.ended and unjudged < MIN_SPEECH:
            turns.hold = False
            turns.take()  # nothing in it was a turn
            overlap = None
            return
        if unjudged >= JUDGE_AFTER or ((at_pause or ov.ended) and unjudged >= MIN_SPEECH):
            # the words since the last taken for an echo or a backchannel: what was judged
            # so stays judged (each new look at it is another chance for Whisper to mishear
            # it: "I see, okay" heard right twice, then as "IC, okay."). Words since then
            # judged "unclear" are judged again with what follows ("tell me" may read as
            # nothing, "tell me about Germany" does not)
            ov.clip_start = ov.start if ov.settled is None \
                else max(ov.start, ov.settled - PREROLL)
            ov.clip_first = turns.received - turns.kept + int(ov.clip_start * RATE)
            audio = turns.since(ov.clip_start, as_heard=True)
            cleaned = turns.since(ov.clip_start) if turns.echo is not None else None
            ov.judged_at, ov.judged_speech = turns.kept / RATE, turns.speech_seconds
            finished = at_pause or ov.ended
            ov.judging = asyncio.create_task(verdict_on(ov, audio, cleaned, finished))
            watch(ov.judging)

    async def verdict_on(ov: Overlap, audio: Audio, cleaned: Audio | None,
                         finished: bool) -> None:
        nonlocal overlap
        assert s.judge is not None
        said, spoken, out = "", None, reply.out if reply is not None else None
        if out is not None:
            now = time.perf_counter()  # the clip's last sample has just arrived
            said = out.said_between(now - audio.duration - ECHO_LAG, now + ECHO_TAIL)
            if out.spoken:
                spoken = Audio(out.reference(), RATE)
        try:
            verdict = await loop.run_in_executor(s.gate.pool, s.judge.judge, audio, said,
                                                 spoken, cleaned, finished)
        except Exception as exc:  # no verdict: better to stop talking than to talk over
            log.warning("barge-in judge failed: %r", exc)
            verdict = Verdict("interruption", "")
        ov.judging = None
        share = round(verdict.echo.share, 3) if verdict.echo else None
        if overlap is not ov:
            return
        fit = verdict.echo
        if fit is not None and fit.share >= ECHO_PATH and out is not None \
                and not verdict.interrupts:
            # the echo's path is known: take it out of the stream from now on
            turns.echo = (EchoPath(ov.clip_first - fit.offset, fit.gain), out)
            turns.clean()  # take it out of what is buffered too: the next clip is the user
        if verdict.interrupts:
            overlap, turns.hold = None, False
            turns.echo = None  # the client stops playing: no more echo to take out
            turns.onset = max(turns.onset, ov.clip_start)  # the turn leaves out ignored echo
            await _send(ws, "input_audio_buffer.speech_started", barge_in=verdict.transcript,
                        echo_share=share)
            await cancel_reply("barge-in")
            if reply is not None:  # while the answer stopped, the user's turn ended
                return
            if ov.ended:  # the interruption is already over: it is the user's turn
                await end_turn()
            elif turns.paused:
                await speculate()
            return
        ov.cut = verdict.kind == "unclear" and not finished
        await _send(ws, "input_audio_buffer.speech_ignored", reason=verdict.kind,
                    transcript=verdict.transcript, echo_share=share,
                    **({"read_as": verdict.reading} if verdict.reading else {}))
        if verdict.kind == "echo" and not verdict.transcript:
            # all it heard was the echo, now taken out: listen afresh, so that the user's
            # words start a clip of their own
            overlap = None
            turns.clear()
            return
        if verdict.kind in ("echo", "backchannel"):
            ov.settled = ov.judged_at  # the end of the clip just judged
        judge_if_due(at_pause=paused_to_judge())

    def start_reply(audio: Audio | None, ended_at: float, held: bool,
                    from_results: bool = False, text: str | None = None) -> Reply | None:
        if not from_results and text is None and (audio is None or
                                                  audio.duration < MIN_SPEECH):
            return None
        turn = session.turns + 1
        turns.echo = None  # a new answer: the old one's echo path no longer holds
        if not held:
            session.turns = turn
        out = Outbox(ws, held)
        task = asyncio.create_task(_answer(ws, s, session, audio, out, turn, ended_at, text))
        task.add_done_callback(_log_failure)
        answers.add(task)
        task.add_done_callback(answers.discard)
        return Reply(task, out, turn)

    async def judge(pending: Reply, audio: Audio) -> None:
        """The end-of-turn model's verdict on the paused turn (off the event loop)."""
        if s.turn is not None:
            with contextlib.suppress(Exception):  # no verdict: the VAD and the text decide
                pending.sounds_finished = await loop.run_in_executor(
                    s.gate.pool, s.turn.complete, audio)

    def finished(pending: Reply) -> bool | None:
        """Whether the paused turn reads and sounds over: None while still unknown."""
        if not pending.out.heard.is_set():
            return None
        if pending.sounds_finished is not None and pending.sounds_finished < SOUNDS_UNFINISHED:
            return False
        return not looks_unfinished(pending.out.transcript or "")

    async def end_turn() -> None:
        nonlocal reply
        await _send(ws, "input_audio_buffer.speech_stopped")
        if not session.timing.auto_respond:  # the client asks for the answer
            audio = turns.take()
            if audio is not None and audio.duration >= MIN_SPEECH:
                session.heard = audio
            return
        if reply is not None and reply.out.held:  # the speculative answer is the answer
            session.turns = reply.turn
            turns.take()
            await reply.out.release()
            return
        silence = turns.silence_run
        reply = start_reply(turns.take(), time.perf_counter() - silence, held=False)

    async def speculate() -> None:
        """Start the paused turn's answer, held until the turn is known to be over."""
        nonlocal reply
        if reply is not None and reply.out.held:
            return
        await cancel_reply("new turn")
        audio = turns.peek()
        reply = pending = start_reply(audio, time.perf_counter() - turns.silence_run,
                                      held=True)
        if pending is not None and audio is not None:
            await judge(pending, audio)  # `reply` may have moved on meanwhile: judge this one
            watch(asyncio.create_task(check_when_heard(pending)))

    async def check_end() -> None:
        """End a paused turn on `end_silence` once it is known to be finished."""
        if not turns.paused or overlap is not None:
            return
        if reply is None or not reply.out.held:
            turns.needed = session.timing.end_silence  # nothing speculative to judge
            return
        if turns.settle(finished(reply)):
            await end_turn()

    async def check_when_heard(pending: Reply) -> None:
        """The verdict may come after the silence (ASR takes a while; a client may stop
        streaming once it has sent its question): look again as soon as it does."""
        await pending.out.heard.wait()
        if reply is pending:
            with contextlib.suppress(Exception):  # a closed socket: the session loop sees it
                await check_end()

    try:
        await _send(ws, "session.created", session={
            "id": session.id, "input_sample_rate": session.input_rate,
            "turn_detection": "server_vad", "vad": _timing_json(session.timing),
            "idle_timeout": idle, "max_turn_seconds": s.settings.max_audio_seconds})
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
                if len(data) > 2 * session.input_rate * MAX_FRAME_SECONDS:
                    await _send(ws, "error", message=f"an audio frame may hold at most "
                                f"{MAX_FRAME_SECONDS:g} s; send 20-100 ms frames",
                                kind="protocol")
                    continue
                pcm = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
                for event in turns.feed(turns.to_16k(pcm)):
                    if overlap is not None:  # speech over the answer: its verdict decides
                        if event in ("started", "stopped"):
                            overlap.ended = event == "stopped"
                        if event == "stopped":
                            judge_if_due(at_pause=True)
                        continue
                    if event == "started" and assistant_speaking():
                        overlap = Overlap(turns.onset, turns.onset)
                        turns.hold = True
                        continue
                    if event == "started":  # the client stops playback at once
                        await _send(ws, "input_audio_buffer.speech_started")
                        await cancel_reply("barge-in")
                    elif event == "resumed":  # the user went on: drop the held answer
                        if reply is not None and reply.out.held:
                            await cancel_reply("resumed")
                            session.speculations_dropped += 1
                    elif event == "paused" and session.timing.speculate_after > 0 and \
                            session.timing.auto_respond:
                        await speculate()
                    elif event == "stopped":
                        await end_turn()
                    elif event == "full":
                        await _send(ws, "error", kind="turn_cap", message=(
                            f"this turn reached the {s.settings.max_audio_seconds:g} s cap; "
                            "later audio is dropped until it is committed or cleared"))
                judge_if_due(at_pause=paused_to_judge())
                await check_end()
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
                        "vad": _timing_json(session.timing),
                        "want_audio": session.want_audio, "language": session.language,
                        "tools": [t.name for t in session.tools]})
            elif kind == "input_audio_buffer.commit":
                await cancel_reply("new turn")
                reply = start_reply(turns.take(), time.perf_counter(), held=False)
            elif kind == "input_audio_buffer.clear":
                turns.clear()
                overlap = None
            elif kind == "response.cancel":
                await cancel_reply("client")
            elif kind == "conversation.item.create" and _typed_text(command.get("item")):
                session.typed = _typed_text(command.get("item"))  # answered on response.create
                await _send(ws, "conversation.item.created", item={"type": "message",
                                                                   "role": "user"})
            elif kind == "conversation.item.create":
                problem = _tool_output(session, command.get("item"))
                if problem:
                    await _send(ws, "error", message=problem, kind="tool")
                else:
                    item = command["item"]
                    await _send(ws, "conversation.item.created", item={
                        "type": "function_call_output", "call_id": item["call_id"]})
            elif kind == "response.create" and session.heard is not None:
                await cancel_reply("new turn")
                heard, session.heard = session.heard, None
                reply = start_reply(heard, time.perf_counter(), held=False)
            elif kind == "response.create" and session.typed is not None:
                await cancel_reply("new turn")
                typed, session.typed = session.typed, None
                reply = start_reply(None, time.perf_counter(), held=False, text=typed)
            elif kind == "response.create":
                if not session.history or session.history[-1].role != "tool" or \
                        pending_calls(session.history):
                    await _send(ws, "error", kind="protocol", message=(
                        "response.create answers a typed message or tool results: send "
                        "the message, or every pending call's function_call_output, first"))
                    continue
                await cancel_reply("new turn")
                reply = start_reply(None, time.perf_counter(), held=False, from_results=True)
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
        for task in [*answers, *watchers]:  # a stopping answer too, not only the current one
            task.cancel()
        s.sessions -= 1


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a voice turn failed: %r", task.exception())


def _typed_text(item: Any) -> str | None:
    """The text of a typed user message item (`input_text` parts), if that is what it is."""
    if not isinstance(item, dict) or item.get("type") != "message" or \
            item.get("role") != "user" or not isinstance(item.get("content"), list):
        return None
    parts = [p.get("text") for p in item["content"]
             if isinstance(p, dict) and p.get("type") in ("input_text", "text")]
    text = " ".join(p for p in parts if isinstance(p, str)).strip()
    return text or None


def _tool_output(session: Session, item: Any) -> str | None:
    """Add a client's `function_call_output` item to the history; the problem, if any."""
    if not isinstance(item, dict) or item.get("type") != "function_call_output":
        return "conversation.item.create takes an item of type 'function_call_output'"
    call_id, output = item.get("call_id"), item.get("output")
    pending = {c.id for c in pending_calls(session.history)}
    if not isinstance(call_id, str) or call_id not in pending:
        return (f"call_id {call_id!r} is not a pending call (pending: "
                f"{', '.join(sorted(pending)) or 'none'}); a call the user talked over is "
                "closed")[:300]
    text = output if isinstance(output, str) else output_text(output)
    session.history = (*session.history, Message("tool", fit_output(text),
                                                 tool_call_id=call_id))
    return None


def _update(session: Session, data: Any) -> str | None:
    """Apply a session.update; the problem with it, if any."""
    if not isinstance(data, dict):
        return "session.update needs a 'session' object"
    rate = data.get("input_sample_rate", session.input_rate)
    if not isinstance(rate, int) or not 8000 <= rate <= 48000:
        return "input_sample_rate must be an integer from 8000 to 48000"
    detection = data.get("turn_detection", "server_vad" if session.server_vad else "none")
    timing = session.timing
    if isinstance(detection, dict):
        asked = _timing_of(detection, session.timing, session.defaults)
        if isinstance(asked, str):
            return asked
        timing, detection = asked, "server_vad"
    if detection not in ("server_vad", "none", None):
        return ("turn_detection must be 'server_vad', 'none' or an object (type, threshold, "
                "silence_duration_ms, prefix_padding_ms, create_response, eagerness)")
    instructions = data.get("instructions", session.instructions)
    if instructions is not None and not isinstance(instructions, str):
        return "instructions must be a string"
    limit = data.get("max_tokens", session.max_tokens)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        return "max_tokens must be a positive integer"
    want_audio = data.get("want_audio", session.want_audio)
    if not isinstance(want_audio, bool):
        return "want_audio must be true or false"
    language = data.get("language", session.language)
    if language is not None and not (isinstance(language, str) and LANGUAGE.fullmatch(language)):
        return "language must be a code such as 'en', or null to detect it"
    try:
        tools = tools_of(data["tools"]) if "tools" in data else session.tools
        choice = tool_choice_of(data["tool_choice"], tools) if "tool_choice" in data \
            else session.tool_choice
        check_choice(choice, tools)  # new tools may leave out the one a standing choice names
    except ToolError as exc:
        return str(exc)
    session.tools, session.tool_choice = tools, choice
    session.max_tokens = limit
    session.input_rate = rate
    session.server_vad = detection == "server_vad"
    session.timing = timing
    session.instructions = instructions or None
    session.want_audio = want_audio
    session.language = language
    return None


# semantic_vad eagerness -> (end_silence, patient_silence); "auto" and "medium" keep the
# server's own. "high" answers sooner and cuts in more; "low" lets people think aloud.
EAGERNESS = {"high": (0.5, 1.0), "low": (1.2, 3.0)}


def _timing_of(detection: dict[str, Any], now: TurnTiming, defaults: TurnTiming
               ) -> TurnTiming | str:
    """A session's turn timing from an OpenAI-style `turn_detection` object; or the problem.
    Fields left out keep their current values; `semantic_vad` eagerness `auto` or `medium`
    means the server's own (`defaults`), whatever an earlier update asked for."""
    kind = detection.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        return "turn_detection type must be 'server_vad' or 'semantic_vad'"
    changes: dict[str, Any] = {}
    for key in ("threshold", "silence_duration_ms", "prefix_padding_ms"):
        value = detection.get(key)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            return f"turn_detection.{key} must be a number"
    if detection.get("threshold") is not None:
        changes["threshold"] = float(detection["threshold"])
    end = now.end_silence
    if kind == "semantic_vad":
        eagerness = detection.get("eagerness", "auto")
        if eagerness not in ("auto", "low", "medium", "high"):
            return "turn_detection.eagerness must be 'auto', 'low', 'medium' or 'high'"
        end, patient = EAGERNESS.get(eagerness, (defaults.end_silence,
                                                 defaults.patient_silence))
        changes["patient_silence"] = patient
    if detection.get("silence_duration_ms") is not None:
        end = detection["silence_duration_ms"] / 1000
        if not 0.05 <= end <= 10.0:
            return "turn_detection.silence_duration_ms must be 50 to 10000"
    if end != now.end_silence or "patient_silence" in changes:
        # an unfinished-sounding turn still waits longer; the answer is still prepared early
        changes["end_silence"] = end
        changes["patient_silence"] = max(changes.get("patient_silence", now.patient_silence),
                                         end)
        changes["speculate_after"] = min(defaults.speculate_after, end / 2)
    if detection.get("prefix_padding_ms") is not None:
        changes["preroll"] = detection["prefix_padding_ms"] / 1000
    respond = detection.get("create_response", now.auto_respond)
    if not isinstance(respond, bool):
        return "turn_detection.create_response must be true or false"
    changes["auto_respond"] = respond
    try:
        return replace(now, **changes)
    except ValueError as exc:
        return f"turn_detection: {exc}"


def _timing_json(timing: TurnTiming) -> dict[str, Any]:
    return {"threshold": timing.threshold,
            "silence_duration_ms": round(timing.end_silence * 1000),
            "unfinished_silence_ms": round(timing.patient_silence * 1000),
            "prefix_padding_ms": round(timing.preroll * 1000),
            "create_response": timing.auto_respond}
