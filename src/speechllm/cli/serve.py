"""`speechllm serve`: the OpenAI-compatible HTTP API, realtime voice and the web page."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from speechllm._optional import require
from speechllm.cli.common import (
    Post,
    approach_config,
    embedded,
    ensure_models,
    err,
    exits_on_error,
    whisper_language,
)


def _backchannels(given: str | None) -> tuple[str, ...]:
    from speechllm.turn.barge_in import BACKCHANNELS
    if given is None:
        return BACKCHANNELS
    phrases = tuple(p.strip() for p in given.split(",") if p.strip())
    if not phrases:
        raise typer.BadParameter("--backchannels needs at least one phrase")
    return phrases



def serve(
    config: Annotated[Path | None, typer.Option("--config", help="JSON approach config "
                      "(default: the cascade with the options below).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    asr: Annotated[str, typer.Option(help="ASR model name or path.")] = "whisper-base",
    llm: Annotated[str, typer.Option(help="Chat GGUF name or path.")] = "qwen2.5-0.5b-instruct",
    language: Annotated[str, typer.Option(help="Language users speak (a Whisper code such as "
                        "'en'), or 'auto' to detect it on every turn, which short questions "
                        "can get wrong.")] = "auto",
    api_key: Annotated[str | None, typer.Option(envvar="SPEECHLLM_API_KEY", help="Require "
                       "this bearer key on every route and the WebSocket.")] = None,
    workers: Annotated[int, typer.Option(help="Turns that run at once; more queue in "
                       "arrival order.")] = 1,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body.")] = 25.0,
    max_audio_seconds: Annotated[float, typer.Option(help="Longest audio per request or "
                                 "voice turn.")] = 600.0,
    idle_timeout: Annotated[float, typer.Option(help="Close voice sessions idle this many "
                            "seconds.")] = 120.0,
    model_id: Annotated[str, typer.Option(help="Model id listed by /v1/models.")] = "speechllm",
    end_silence: Annotated[float, typer.Option(help="Seconds of silence that end a voice "
                           "turn that sounds and reads finished.")] = 0.9,
    speculate_after: Annotated[float, typer.Option(help="Seconds of silence after which a "
                               "voice turn's answer is prepared, unseen until the turn "
                               "ends (0: off).")] = 0.03,
    patient_silence: Annotated[float, typer.Option(help="Seconds of silence that end a voice "
                               "turn that sounds or reads unfinished.")] = 1.5,
    turn_model: Annotated[str, typer.Option(help="End-of-turn model for voice turns, or "
                          "'none' (see docs/serving.md).")] = "none",
    barge_in: Annotated[str, typer.Option(help="'words': only an interruption cancels an "
                        "answer, not a backchannel, echo or an unclear word; 'vad': any "
                        "speech does.")] = "words",
    backchannels: Annotated[str | None, typer.Option(help="Comma-separated phrases that "
                            "never cancel an answer (default: uh-huh, yeah, okay, ...).")
                            ] = None,
    barge_in_language: Annotated[str, typer.Option(help="Language the barge-in judge hears "
                                 "users speak (a Whisper code such as 'de'), or 'auto'; use "
                                 "with --backchannels in that language.")] = "en",
    shutdown_grace: Annotated[int, typer.Option(min=0, help="On SIGTERM, seconds to let "
                              "answers in flight finish before they are cut.")] = 30,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM): serve "
                            "https:// and wss://, which OpenAI's JavaScript client and "
                            "Twilio require.")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="The certificate's private key "
                           "(PEM).")] = None,
) -> None:
    """Serve a speech LLM: OpenAI-compatible HTTP API, realtime voice and a web page.

    Realtime voice is a WebSocket at /v1/realtime, the page is at /. Models load once, at
    start-up."""
    uvicorn = require("uvicorn", "serve")
    from speechllm import approach
    from speechllm.serve.app import create_app
    from speechllm.serve.settings import ServeSettings
    from speechllm.serve.ws_protocol import AnsweringWebSocketProtocol

    with exits_on_error():
        approach_settings = approach_config(config, asr, llm, Post.none, True,
                                            whisper_language("--language", language))
        approach.check(approach_settings)
        if config is None:
            ensure_models(embedded(asr, llm, "piper-joe", "silero-vad", turn_model))
        if (ssl_certfile is None) != (ssl_keyfile is None):
            raise typer.BadParameter("--ssl-certfile and --ssl-keyfile go together")
        for tls_file in (ssl_certfile, ssl_keyfile):
            if tls_file is not None and not tls_file.is_file():
                raise typer.BadParameter(f"{tls_file} is not a file")
        settings = ServeSettings(approach=approach_settings, model_id=model_id,
                                 api_key=api_key, workers=workers,
                                 max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                                 max_audio_seconds=max_audio_seconds,
                                 idle_timeout=idle_timeout, end_silence=end_silence,
                                 speculate_after=speculate_after,
                                 patient_silence=patient_silence, turn_model=turn_model,
                                 barge_in=barge_in, backchannels=_backchannels(backchannels),
                                 barge_in_language=whisper_language("--barge-in-language",
                                                                    barge_in_language))
    scheme = "https" if ssl_certfile else "http"
    err.print(f"speechllm serve: {scheme}://{host}:{port}/ (API under /v1, voice at "
              "/v1/realtime)"
              + (", API key required" if api_key else ""), highlight=False)
    # uvicorn finishes in-flight requests on SIGTERM, then re-raises the signal; exiting 0
    # there tells service managers the shutdown went as planned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info",
                timeout_graceful_shutdown=shutdown_grace, ws=AnsweringWebSocketProtocol,
                ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
                ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None)
