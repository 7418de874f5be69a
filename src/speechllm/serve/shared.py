"""What the routes share, in one module so that none of them imports another: the error type
and body (OpenAI's shape), the shared models (`Services`), the API key check and the timings'
wire form."""

from __future__ import annotations

import collections
import hmac
from dataclasses import dataclass, field
from typing import Any

from speechllm.serve import heap
from speechllm.serve.gate import FairGate
from speechllm.serve.settings import ServeSettings
from speechllm.speechlm import SpeechLM
from speechllm.timing import Timings
from speechllm.tts.base import TTS
from speechllm.turn.barge_in import BargeInJudge
from speechllm.turn.base import TurnDetector
from speechllm.vad.base import VAD


class APIError(Exception):
    """An error for the client, in OpenAI's shape."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def error_body(message: str, status: int, code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class Services:
    """What every route shares."""

    settings: ServeSettings
    model: SpeechLM
    tts: TTS | None
    vad: VAD  # for voice sessions
    gate: FairGate
    turn: TurnDetector | None = None  # end-of-turn model for voice sessions
    judge: BargeInJudge | None = None  # tells interruptions from backchannels and echo
    sessions: int = 0  # open voice sessions
    # seconds per stage of recent voice turns (vad, asr, ..., endpoint, ttfa after speech)
    stage_seconds: dict[str, collections.deque[float]] = field(default_factory=dict)
    # what recent spoken chat questions said (sha1 of the audio bytes -> transcript), so a
    # client sending the question back in the history (a tool round) is not heard again
    heard: collections.OrderedDict[str, str] = field(default_factory=collections.OrderedDict)

    def remember(self, key: str, transcript: str) -> None:
        self.heard[key] = transcript
        self.heard.move_to_end(key)
        while len(self.heard) > 256:
            self.heard.popitem(last=False)

    def record(self, name: str, seconds: float) -> None:
        self.stage_seconds.setdefault(name, collections.deque(maxlen=500)).append(seconds)

    def stage_percentiles(self) -> dict[str, dict[str, float]]:
        """p50 and p95 of each stage over the last 500 voice turns."""
        out = {}
        for name, values in sorted(self.stage_seconds.items()):
            ordered = sorted(values)
            n = len(ordered)
            out[name] = {"p50": round(ordered[min(n - 1, n // 2)], 4),
                         "p95": round(ordered[min(n - 1, int(0.95 * n))], 4), "turns": n}
        return out


def key_ok(settings: ServeSettings, authorization: str | None, query_key: str | None) -> bool:
    """Bearer header, or `api_key` query parameter (browsers cannot set WebSocket headers)."""
    if settings.api_key is None:
        return True
    given = query_key or ""
    if authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    return hmac.compare_digest(given.encode(), settings.api_key.encode())


def load_services(settings: ServeSettings) -> Services:
    """Build the models named by the settings (slow: run it off the event loop)."""
    from speechllm import approach
    from speechllm.asr.base import ASR_BACKENDS
    from speechllm.tts.base import make_tts
    from speechllm.vad.base import VAD_BACKENDS

    model = approach.build(settings.approach)
    tts = getattr(model, "tts", None)  # a cascade's own voice serves /v1/audio/speech too
    if tts is None and settings.tts != "none":
        tts = make_tts(settings.tts, settings.voice)
    turn = None
    if settings.turn_model != "none":
        from speechllm.turn.smart_turn import SmartTurn
        turn = SmartTurn(settings.turn_model)
    judge = None
    if settings.barge_in == "words":
        asr = getattr(model, "asr", None)  # a cascade's recogniser serves the judge too
        if asr is None:
            asr = ASR_BACKENDS.get("faster-whisper")("whisper-base")
        judge = BargeInJudge(asr, settings.backchannels, settings.barge_in_language)
    vad = VAD_BACKENDS.get("silero")()
    gate = FairGate(settings.workers, on_idle=heap.give_back)
    return Services(settings, model, tts, vad, gate, turn, judge)


def services_of(request: Any) -> Services:
    services: Services = request.app.state.services
    return services


def timings_json(t: Timings) -> dict[str, Any]:
    return {"ttft": t.ttft, "ttfa": t.ttfa, "total": t.total,
            "spans": [{"name": s.name, "start": s.start, "end": s.end} for s in t.spans]}
