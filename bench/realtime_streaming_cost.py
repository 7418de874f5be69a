"""What streaming costs the server's stages (issue 42): each question is sent to a running
`speechllm serve` twice, once as 20 ms frames on a real-time schedule (silence streaming on
until the answer is done, as a live client does) and once in one burst (question plus 1.6 s
of silence, then nothing), and the medians of the server's own spans (`response.done`
timings) are printed for each way.

    .venv/bin/speechllm serve --port 8090 &
    .venv/bin/python bench/realtime_streaming_cost.py ws://127.0.0.1:8090/v1/realtime /tmp/q/*.wav
"""
from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

import numpy as np
import soundfile as sf
import websockets


async def turn(url, wav, mode):
    pcm, sr = sf.read(wav, dtype="int16")
    audio = np.concatenate([np.zeros(8000, np.int16), pcm, np.zeros(int(1.6 * sr), np.int16)])
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "session.update",
                                  "session": {"max_tokens": 20, "language": "en"}}))
        res = {}
        async def reader():
            async for msg in ws:
                if isinstance(msg, bytes):
                    continue
                m = json.loads(msg)
                if m.get("type") == "response.done":
                    res["t"] = m.get("timings")
                    return
        r = asyncio.create_task(reader())
        t0 = time.monotonic()
        for k in range(0, len(audio), 320):
            await ws.send(audio[k:k+320].tobytes())
            if mode == "rt":
                await asyncio.sleep(max(0, t0 + (k + 320) / 16000 - time.monotonic()))
        if mode == "rt":
            while not r.done():
                await ws.send(np.zeros(320, np.int16).tobytes())
                await asyncio.sleep(0.02)
        await asyncio.wait_for(r, 30)
        return res["t"]

async def main():
    url, wavs = sys.argv[1], sys.argv[2:]
    out = {"rt": {}, "burst": {}}
    for _ in range(2):
        for wav in wavs:
            for mode in ("rt", "burst"):
                t = await turn(url, wav, mode)
                for s in t["spans"]:
                    out[mode].setdefault(s["name"], []).append(s["end"] - s["start"])
    for mode, spans in out.items():
        print(mode, {k: round(statistics.median(v) * 1000) for k, v in spans.items()})
asyncio.run(main())
