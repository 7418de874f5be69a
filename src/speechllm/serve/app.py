"""The FastAPI application: shared models, protection, errors, the web page.

Models load once, when the app starts (or are handed in, for tests and embedding); every
request and voice session shares them through one `FairGate`. Errors come back in OpenAI's
shape, `{"error": {"message", "type", "param", "code"}}`, with a 4xx status for anything the
client can fix.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import logging
import os
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from speechllm._optional import require
from speechllm.errors import AudioError, ModelError, NoSpeechError, SpeechLLMError
from speechllm.serve.gate import FairGate
from speechllm.serve.settings import ServeSettings
from speechllm.speechlm import SpeechLM
from speechllm.tts.base import TTS
from speechllm.turn.barge_in import BargeInJudge
from speechllm.turn.base import TurnDetector
from speechllm.vad.base import VAD

fastapi = require("fastapi", "serve")
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import HTMLResponse, JSONResponse  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402

EXIT_AFTER = 5.0  # seconds after shutdown before worker threads still busy are abandoned
log = logging.getLogger("speechllm.serve")


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
        judge = BargeInJudge(asr, settings.backchannels)
    vad = VAD_BACKENDS.get("silero")()
    return Services(settings, model, tts, vad, FairGate(settings.workers), turn, judge)


def _leave() -> None:
    log.warning("worker threads still busy %g s after shutdown; exiting without them",
                EXIT_AFTER)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


class UploadCap:
    """ASGI middleware: refuse bodies over the cap, by Content-Length or while streaming."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit():
            if int(length) > self.limit:
                return await self._refuse(send)
            return await self.app(scope, receive, send)  # h11 holds the client to its length
        # No length (chunked): read the body here, refusing it as soon as it passes the cap,
        # and hand the app what was read. Raising from inside the app's receive instead
        # surfaces as a 500 through the middleware's task group, or as the multipart parser's
        # own 400.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                return await self._refuse(send)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(error_body(f"request body over the {self.limit} byte cap", 413,
                                     "payload_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class ShutdownAnswer:
    """ASGI middleware: a request still running when the shutdown grace ends (uvicorn cancels
    it) gets a JSON 503 in OpenAI's shape, not uvicorn's plain-text 500."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watched(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except asyncio.CancelledError:
            if not started:
                body = json.dumps(error_body("the server is shutting down; retry the "
                                             "request", 503, "shutting_down")).encode()
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.start", "status": 503,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
            raise


def create_app(settings: ServeSettings | None = None,
               services: Services | None = None) -> FastAPI:
    """The app; `services` hands in models already built (else they load at start-up)."""
    from speechllm.serve import openai_routes, realtime

    settings = services.settings if services is not None else (settings or ServeSettings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is None:
            log.info("loading models for %s", settings.approach)
            app.state.services = await asyncio.to_thread(load_services, settings)
        else:
            app.state.services = services
        log.info("ready")
        yield
        app.state.services.gate.close()  # uvicorn has closed voice sessions (1012) by now
        # A model call cut off by the grace keeps its worker thread busy to the end of its
        # answer, and Python joins worker threads at exit: minutes for a long answer. Nothing
        # is left to send it to, so the process leaves without them.
        watchdog = threading.Timer(EXIT_AFTER, _leave)
        watchdog.daemon = True
        watchdog.start()

    app = FastAPI(title="speechllm", lifespan=lifespan,
                  description="OpenAI-compatible speech API and realtime voice sessions")

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        if not key_ok(settings, request.headers.get("authorization"),
                      request.query_params.get("api_key")):
            return JSONResponse(error_body("missing or wrong API key (Authorization: Bearer "
                                           "KEY)", 401, "invalid_api_key"), status_code=401)
        return await call_next(request)

    app.add_middleware(UploadCap, limit=settings.max_upload_bytes)
    app.add_middleware(ShutdownAnswer)  # outermost: it sees the cancellation last

    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.status, exc.code, exc.param),
                            status_code=exc.status)

    def answer_with(status: int, code: str | None) -> Any:
        async def handler(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse(error_body(str(exc), status, code or type(exc).__name__),
                                status_code=status)
        return handler

    # starlette answers with the handler of the nearest class in the exception's MRO
    for kind, status, code in ((NoSpeechError, 400, "no_speech"),
                               (AudioError, 400, "invalid_audio"),
                               (ValueError, 400, "invalid_value"),
                               (ModelError, 503, "model_error"),
                               (SpeechLLMError, 500, None)):
        app.add_exception_handler(kind, answer_with(status, code))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query"))
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return JSONResponse(error_body("; ".join(parts) or "invalid request", 400,
                                       "invalid_request"), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail), exc.status_code),
                            status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.exception("request failed (incident %s)", incident)
        # the details (object reprs, paths) stay in the server's log, under the incident id
        return JSONResponse(error_body(f"internal error ({type(exc).__name__}); the server "
                                       f"log has the details under incident {incident}",
                                       500, "internal_error"), status_code=500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("speechllm.serve").joinpath(
            "web/index.html").read_text(encoding="utf-8"))

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        s: Services = request.app.state.services
        return {"status": "ok", "running": s.gate.running, "queued": s.gate.queued,
                "sessions": s.sessions, "voice_stage_seconds": s.stage_percentiles()}

    app.include_router(openai_routes.router)
    app.include_router(realtime.router)
    return app


def services_of(request: Any) -> Services:
    services: Services = request.app.state.services
    return services
