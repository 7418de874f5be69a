"""Soak a live `speechllm serve`: rounds of mixed requests, bad ones among them, and the
server's resident memory after each round.

Each round, one after the other: two text chats, a transcription, a spoken chat (input_audio),
text to speech, a realtime voice session (the question streamed at 4x real time, answered
aloud), and five bad requests (garbage audio, a text file as audio, a wrong type, JSON nested
100,000 deep, an unknown response format). Good requests must succeed and bad ones get a 4xx,
every round. RSS (VmRSS from /proc, so Linux only) is read after each round: after the first
rounds (warm-up: caches, arenas, lazily built graphs) it should level off.

    .venv/bin/python bench/serve_soak.py --rounds 30
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUESTION = ROOT / "examples" / "question.wav"


@dataclass
class Round:
    rss_mb: float
    objects: int | None = None  # live Python objects, from /health (None: an older server)
    good: int = 0  # good requests that succeeded
    refused: int = 0  # bad requests that got a 4xx
    failures: list[str] = field(default_factory=list)  # anything else


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _post(url: str, body: bytes, content_type: str = "application/json",
          key: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": content_type}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, body, headers)
    try:
        with urllib.request.urlopen(request, timeout=300) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _form(name: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = "soakb0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n"
            f"whisper-1\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n").encode() \
        + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


async def _voice_turn(ws_url: str, pcm: bytes, key: str | None) -> str:
    import websockets

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "session.update", "session": {"max_tokens": 16}}))
        for i in range(0, len(pcm), 3200):
            await ws.send(pcm[i:i + 3200])
            await asyncio.sleep(0.025)
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 120))
            if message["type"] in ("response.done", "error"):
                return str(message["type"])


def one_round(base: str, pid: int, key: str | None = None, settle: float = 1.0) -> Round:
    """One round of mixed requests against `base` (http://host:port); RSS of `pid` read
    `settle` seconds after."""
    from speechllm.audio import load

    question = QUESTION.read_bytes()
    samples = load(QUESTION, 16000).samples
    pcm = (np.concatenate([samples, np.zeros(16000 * 2, np.float32)]) * 32767
           ).astype("<i2").tobytes()
    chat = base + "/v1/chat/completions"
    good: list[tuple[str, tuple[int, bytes]]] = []
    for text in ("Say hello.", "Name a colour."):
        good.append(("chat", _post(chat, json.dumps({"messages": [
            {"role": "user", "content": text}], "max_tokens": 16}).encode(), key=key)))
    body, kind = _form("q.wav", question, "audio/wav")
    good.append(("transcription", _post(base + "/v1/audio/transcriptions", body, kind, key)))
    spoken = {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {
        "data": base64.b64encode(question).decode(), "format": "wav"}}]}], "max_tokens": 16}
    good.append(("spoken chat", _post(chat, json.dumps(spoken).encode(), key=key)))
    good.append(("speech", _post(base + "/v1/audio/speech", json.dumps(
        {"model": "tts-1", "voice": "alloy", "input": "Hello there."}).encode(), key=key)))
    bad = [
        _post(base + "/v1/audio/transcriptions", *_form("g.wav", b"RIFF" + bytes(300),
                                                        "audio/wav"), key=key),
        _post(base + "/v1/audio/transcriptions", *_form("n.txt", b"just text " * 50,
                                                        "text/plain"), key=key),
        _post(chat, b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": true}',
              key=key),
        _post(chat, b"[" * 100_000 + b"]" * 100_000, key=key),
        _post(base + "/v1/audio/speech", json.dumps({"input": "hi", "response_format": "aiff"}
                                                    ).encode(), key=key),
    ]
    result = Round(0.0)
    for name, (status, _) in good:
        if status == 200:
            result.good += 1
        else:
            result.failures.append(f"{name}: HTTP {status}")
    try:
        ws_url = base.replace("http://", "ws://") + "/v1/realtime"
        outcome = asyncio.run(_voice_turn(ws_url, pcm, key))
        if outcome == "response.done":
            result.good += 1
        else:
            result.failures.append(f"voice turn: {outcome}")
    except Exception as exc:  # a dropped session is a failure to report, not to raise
        result.failures.append(f"voice turn: {exc!r}")
    for n, (status, _) in enumerate(bad):
        if 400 <= status < 500:
            result.refused += 1
        else:
            result.failures.append(f"bad request {n}: HTTP {status}")
    time.sleep(settle)  # the server returns freed memory once idle (serve/heap.py)
    result.rss_mb = rss_mb(pid)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with urllib.request.urlopen(urllib.request.Request(base + "/health", headers=headers),
                                timeout=60) as r:
        result.objects = json.loads(r.read()).get("memory", {}).get("python_objects")
    return result


def start(args: list[str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = Path(tempfile.gettempdir()) / f"soak-serve-{port}.log"
    process = subprocess.Popen([str(Path(sys.executable).parent / "speechllm"), "serve",
                                "--port", str(port), *args],
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(base + "/health", timeout=2)
            return process, base, log
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"server did not start; see {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3, help="rounds before the level is set")
    parser.add_argument("serve_args", nargs="*", help="extra `speechllm serve` arguments")
    args = parser.parse_args()
    process, base, log = start(args.serve_args)
    try:
        print(f"start: RSS {rss_mb(process.pid):.0f} MB")
        rounds = []
        for n in range(args.rounds):
            r = one_round(base, process.pid)
            rounds.append(r)
            print(f"round {n + 1:3}: RSS {r.rss_mb:7.1f} MB, {r.objects} Python objects, "
                  f"{r.good}/6 good, {r.refused}/5 refused, failures {r.failures}", flush=True)
    finally:
        process.terminate()
        process.wait(60)
    level = rounds[min(args.warmup, len(rounds)) - 1].rss_mb
    peak_after = max(r.rss_mb for r in rounds[args.warmup:]) if len(rounds) > args.warmup \
        else level
    slope = np.polyfit(range(args.warmup, len(rounds)), [r.rss_mb for r in
                       rounds[args.warmup:]], 1)[0] if len(rounds) > args.warmup + 2 else 0.0
    print(f"\nafter warm-up (round {args.warmup}): {level:.0f} MB; highest later: "
          f"{peak_after:.0f} MB (+{peak_after - level:.0f}); trend {slope:+.2f} MB/round; "
          f"failures: {sum(len(r.failures) for r in rounds)}; server log: {log}")
    # one line per stretch of rounds: does the level still move late in the run?
    stretch = max(1, len(rounds) // 10)
    for first in range(0, len(rounds), stretch):
        rss = [r.rss_mb for r in rounds[first:first + stretch]]
        print(f"rounds {first + 1:4}-{first + len(rss):4}: median {np.median(rss):7.1f} MB, "
              f"lowest {min(rss):7.1f}, highest {max(rss):7.1f}")


if __name__ == "__main__":
    main()
