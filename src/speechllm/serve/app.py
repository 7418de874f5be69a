"""The FastAPI application: shared models, protection, errors, the web page.

Models load once, when the app starts (or are handed in, for tests and embedding); every
request and voice session shares them through one `FairGate`. Errors come back in OpenAI's
shape, `{"error": {"message", "type", "param", "code"}}`, with a 4xx status for anything the
client can fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from speechllm._optional import require
from speechllm.errors import AudioError, ModelError, NoSpeechError, SpeechLLMError
from speechllm.serve import heap, openai_routes, realtime, telephony
from speechllm.serve.settings import ServeSettings
from speechllm.serve.shared import APIError, Services, error_body, key_ok, load_services
from speechllm.tools import ToolCallError

fastapi = require("fastapi", "serve")
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import HTMLResponse, JSONResponse  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.types import ASGIApp, Message, Receive, Scope, Send  # noqa: E402

EXIT_AFTER = 5.0  # seconds after shutdown before worker threads still busy are abandoned
log = logging.getLogger("speechllm.serve")


def _leave() -> None:
    log.warning("worker threads still busy %g s after shutdown; exiting without them",
                EXIT_AFTER)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


class UploadCap:
    """ASGI middleware: refuse bodies over the cap, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(error_body(f"request body over the {self.limit} byte cap", 413,
                                     "payload_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class ShutdownAnswer:
    """ASGI middleware: a request still running when the shutdown grace ends (uvicorn cancels
    it) gets a JSON 503 in OpenAI's shape, not uvicorn's plain-text 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watched(message: Message) -> None:
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
    settings = services.settings if services is not None else (settings or ServeSettings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        heap.cap_arenas(settings.workers)
        if services is None:
            log.info("loading models for %s", settings.approach)
            app.state.services = await asyncio.to_thread(load_services, settings)
            heap.freeze_loaded()  # a server's own process: nothing loaded before it goes away
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
    async def authenticate(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                           ) -> Response:
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

    def answer_with(status: int, code: str | None
                    ) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def handler(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse(error_body(str(exc), status, code or type(exc).__name__),
                                status_code=status)
        return handler

    # starlette answers with the handler of the nearest class in the exception's MRO
    # a model's unusable tool call is the server's failure, not the client's (ToolCallError
    # is a ValueError for Python users)
    for kind, status, code in ((ToolCallError, 500, "invalid_tool_call"),
                               (NoSpeechError, 400, "no_speech"),
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
                "sessions": s.sessions, "voice_stage_seconds": s.stage_percentiles(),
                "memory": heap.usage()}

    app.include_router(openai_routes.router)
    app.include_router(realtime.router)
    app.include_router(telephony.router)
    return app
