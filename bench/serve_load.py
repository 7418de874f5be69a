"""Load test of a live `speechllm serve` on loopback, and its WebSocket ttfa against the
in-process streaming cascade.

1. Load: N concurrent clients (1, 4, 16) each send chat requests with the spoken question as
   `input_audio` (text answer), then N concurrent realtime WebSocket sessions each speak the
   question (streamed at 4x real time) and wait for the spoken answer. Reported: p50/p95
   latency, throughput, errors and crashed sessions, and p50 at N over N x p50 at 1 (the
   queue's growth: 1.0 is linear, the most a single worker can do).
2. ttfa: the same question through the WebSocket (push-to-talk commit -> first audio frame at
   the client) and through `CascadeSpeechLM.stream` in this process (call -> first
   AudioChunk), alternating, with the same models and greedy decoding.

    .venv/bin/python bench/serve_load.py [--levels 1 4 16] [--requests 2] [--ttfa-rounds 5]
                                         [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import websockets

from speechllm.audio import load

ROOT = Path(__file__).resolve().parents[1]
QUESTION = ROOT / "examples" / "question.wav"
MAX_TOKENS = 24


def start_server(port: int, workers: int) -> subprocess.Popen:
    log = open(ROOT / "runs" / "serve_load.log", "w")  # noqa: SIM115 (lives with the server)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "speechllm"), "serve", "--port",
                             str(port), "--idle-timeout", "600", "--workers", str(workers)],
                            stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start; see runs/serve_load.log")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def chat_clients(url: str, n: int, requests: int) -> tuple[list[float], int, float]:
    body = json.dumps({"model": "speechllm", "max_tokens": MAX_TOKENS, "messages": [
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {
            "data": base64.b64encode(QUESTION.read_bytes()).decode(), "format": "wav"}}]}]})
    latencies: list[float] = []
    errors = 0

    def one() -> float:
        start = time.perf_counter()
        req = urllib.request.Request(url + "/v1/chat/completions", body.encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            answer = json.loads(r.read())["choices"][0]["message"]["content"]
        if "paris" not in answer.lower():
            raise RuntimeError(f"wrong answer: {answer!r}")
        return time.perf_counter() - start

    pool = ThreadPoolExecutor(max_workers=n)  # one thread per client: all N really in flight

    async def client() -> None:
        nonlocal errors
        for _ in range(requests):
            try:
                latencies.append(await asyncio.get_running_loop().run_in_executor(pool, one))
            except Exception as exc:
                errors += 1
                print("chat error:", exc, file=sys.stderr)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(n)))
    pool.shutdown()
    return latencies, errors, time.perf_counter() - began


def pcm16(rate: int = 16000, after: float = 1.0) -> bytes:
    q = load(QUESTION, rate).samples
    x = np.concatenate([np.zeros(rate // 4, np.float32), q, np.zeros(int(rate * after),
                                                                      np.float32)])
    return (x * 32767).astype("<i2").tobytes()


async def voice_sessions(ws_url: str, n: int) -> tuple[list[float], int, int, float]:
    """(latency from speech end to response.done, errors, crashed sessions, wall)."""
    data = pcm16()
    latencies: list[float] = []
    errors = crashed = 0

    async def session() -> None:
        nonlocal errors, crashed
        try:
            async with websockets.connect(ws_url, max_size=None) as ws:
                await ws.recv()
                await ws.send(json.dumps({"type": "session.update",
                                          "session": {"max_tokens": MAX_TOKENS}}))

                async def send() -> None:
                    for i in range(0, len(data), 3200):
                        await ws.send(data[i:i + 3200])
                        await asyncio.sleep(0.025)  # 4x real time

                sender = asyncio.create_task(send())
                stopped = None
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 600))
                    if m["type"] == "input_audio_buffer.speech_stopped":
                        stopped = time.perf_counter()
                    elif m["type"] == "error":
                        errors += 1
                        print("session error:", m, file=sys.stderr)
                        break
                    elif m["type"] == "response.done":
                        if stopped is None or "paris" not in m["text"].lower():
                            errors += 1
                        else:
                            latencies.append(time.perf_counter() - stopped)
                        break
                await sender
        except Exception as exc:
            crashed += 1
            print("session crashed:", repr(exc), file=sys.stderr)

    began = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(n)))
    return latencies, errors, crashed, time.perf_counter() - began


async def ws_ttfa(ws_url: str) -> float:
    data = pcm16(after=0.0)
    async with websockets.connect(ws_url, max_size=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "session.update",
                                  "session": {"turn_detection": "none"}}))
        await ws.recv()
        await ws.send(data)
        await asyncio.sleep(0.3)  # the audio is in; now the turn ends
        start = time.perf_counter()
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        first = None
        while True:
            m = json.loads(await ws.recv())
            if m["type"] == "response.audio.delta" and first is None:
                first = time.perf_counter() - start
            if m["type"] == "response.done":
                assert first is not None
                return first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=2, help="chat requests per client")
    parser.add_argument("--ttfa-rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1, help="the server's --workers")
    args = parser.parse_args()
    (ROOT / "runs").mkdir(exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = start_server(port, args.workers)
    url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/v1/realtime"
    try:
        asyncio.run(chat_clients(url, 1, 1))  # warm-up
        print("| kind | concurrent | requests | errors | crashed | p50 s | p95 s | "
              "throughput /s | p50 / (N x p50 at 1) |")
        print("|---|---|---|---|---|---|---|---|---|")
        base: dict[str, float] = {}
        for kind in ("chat", "voice"):
            for n in args.levels:
                if kind == "chat":
                    lat, err, wall = asyncio.run(chat_clients(url, n, args.requests))
                    crashed = 0
                else:
                    lat, err, crashed, wall = asyncio.run(voice_sessions(ws_url, n))
                p50 = pct(lat, 50)
                base.setdefault(kind, p50)
                growth = p50 / (n * base[kind])
                print(f"| {kind} | {n} | {len(lat) + err + crashed} | {err} | {crashed} | "
                      f"{p50:.2f} | {pct(lat, 95):.2f} | {len(lat) / wall:.2f} | "
                      f"{growth:.2f} |", flush=True)

        from speechllm.cascade.build import build_cascade
        from speechllm.speechlm import AudioChunk, Request

        cascade = build_cascade()
        audio = load(QUESTION, 16000)

        async def local_ttfa() -> float:
            start = time.perf_counter()
            async for event in cascade.stream(Request(audio=audio)):
                if isinstance(event, AudioChunk):
                    return time.perf_counter() - start
            raise RuntimeError("no audio")

        asyncio.run(local_ttfa())  # warm-up
        local, remote = [], []
        for _ in range(args.ttfa_rounds):
            local.append(asyncio.run(local_ttfa()))
            remote.append(asyncio.run(ws_ttfa(ws_url)))
        ratio = statistics.median(remote) / statistics.median(local)
        print(f"\nttfa, median of {args.ttfa_rounds}: in-process "
              f"{statistics.median(local):.3f} s, over the WebSocket "
              f"{statistics.median(remote):.3f} s, ratio {ratio:.2f} (target <= 1.2)")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


if __name__ == "__main__":
    main()
