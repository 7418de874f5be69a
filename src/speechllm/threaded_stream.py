"""Turn a blocking generate call into the `SpeechLM.stream` event stream.

PyTorch generation blocks, so it runs in the default executor; each growing decoded text it
reports becomes a `TextDelta`; a spoken answer the model made itself comes as one `AudioChunk`;
then the response's spans and `Done` follow. A failure becomes
an `ErrorEvent`, so the caller's session goes on.
"""

from __future__ import annotations

import asyncio
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


async def threaded_stream(generate: Callable[[Request, OnText], Response],
                          request: Request) -> AsyncIterator[Event]:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Event | None] = asyncio.Queue()
    shown = [""]

    def on_text(text: str) -> None:
        # Decoded text can change at a token boundary (a multi-byte character); only an
        # extension of what was already shown is sent.
        if text.startswith(shown[0]) and len(text) > len(shown[0]):
            loop.call_soon_threadsafe(events.put_nowait, TextDelta(text[len(shown[0]):]))
            shown[0] = text

    def work() -> None:
        try:
            response = generate(request, on_text)
            if response.audio is not None:
                loop.call_soon_threadsafe(events.put_nowait,
                                          AudioChunk(response.audio, response.text))
            for span in response.timings.spans:
                loop.call_soon_threadsafe(events.put_nowait, SpanEvent(span))
            loop.call_soon_threadsafe(events.put_nowait, Done(response))
        except Exception as exc:  # reported as data so the session can go on
            loop.call_soon_threadsafe(events.put_nowait,
                                      ErrorEvent(str(exc) or type(exc).__name__,
                                                 type(exc).__name__))
        finally:
            loop.call_soon_threadsafe(events.put_nowait, None)

    task = loop.run_in_executor(None, work)
    while (event := await events.get()) is not None:
        yield event
    await task
