"""Turn a blocking generate call into the `SpeechLM.stream` event stream.

PyTorch generation blocks, so it runs in the default executor; each growing decoded text it
reports becomes a `TextDelta`; a spoken answer the model made itself comes as one `AudioChunk`;
then the response's spans and `Done` follow. A failure becomes
an `ErrorEvent`, so the caller's session goes on.

Closing the stream early (a barge-in, a client gone) cancels the generation: the next time
the model reports text, which it does after every token, `on_text` raises `Cancelled` inside
the worker, so generation stops within one token step and the model's lock is released.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

from speechllm.speechlm import (
    AudioChunk,
    Done,
    ErrorEvent,
    Event,
    Request,
    Response,
    SpanEvent,
    TextDelta,
)

OnText = Callable[[str], None]


class Cancelled(Exception):
    """Raised from `on_text` in the worker when the stream's consumer has gone."""


Emit = Callable[[Event], None]


async def worker_events(work: Callable[[Emit, threading.Event], None]
                        ) -> AsyncIterator[Event]:
    """Run `work(emit, cancel)` in a worker thread and yield what it emits, in order. A
    failure becomes an `ErrorEvent`; `Cancelled` raised by the work ends it quietly. Closing
    the iterator early sets `cancel` and waits for the worker to notice."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Event | None] = asyncio.Queue()
    cancel = threading.Event()

    def emit(event: Event) -> None:
        loop.call_soon_threadsafe(events.put_nowait, event)

    def run() -> None:
        try:
            work(emit, cancel)
        except Cancelled:
            pass
        except Exception as exc:  # reported as data so the session can go on
            emit(ErrorEvent(str(exc) or type(exc).__name__, type(exc).__name__))
        finally:
            loop.call_soon_threadsafe(events.put_nowait, None)

    task = loop.run_in_executor(None, run)
    try:
        while (event := await events.get()) is not None:
            yield event
    finally:
        cancel.set()
        await task


def threaded_stream(generate: Callable[[Request, OnText], Response],
                    request: Request) -> AsyncIterator[Event]:
    """The events of `generate(request, on_text)`, run in a worker thread."""

    def work(emit: Emit, cancel: threading.Event) -> None:
        shown = [""]

        def on_text(text: str) -> None:
            if cancel.is_set():
                raise Cancelled
            # Decoded text can change at a token boundary (a multi-byte character); only an
            # extension of what was already shown is sent.
            if text.startswith(shown[0]) and len(text) > len(shown[0]):
                emit(TextDelta(text[len(shown[0]):]))
                shown[0] = text

        response = generate(request, on_text)
        if response.audio is not None:
            emit(AudioChunk(response.audio, response.text))
        for span in response.timings.spans:
            emit(SpanEvent(span))
        emit(Done(response))

    return worker_events(work)
