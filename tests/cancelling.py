"""Closing a threaded model's stream stops its generation within one token step."""

from __future__ import annotations

import asyncio
from typing import Any

from speechllm.speechlm import Request, TextDelta


def tokens_after_cancel(model: Any, request: Request, steps: list[int],
                        after_deltas: int = 3) -> tuple[int, int]:
    """(tokens generated when the consumer closed the stream, tokens generated in all);
    `steps` is a list the caller's instrumented model appends to once per token."""
    async def run() -> int:
        stream = model.stream(request)
        seen = 0
        async for event in stream:
            if isinstance(event, TextDelta):
                seen += 1
                if seen == after_deltas:
                    break
        at_close = len(steps)
        await stream.aclose()  # returns once the worker has stopped
        return at_close

    at_close = asyncio.run(run())
    return at_close, len(steps)
