"""When a tool call reaches a realtime voice client, against when a text answer would: the
benchmark's clean Piper requests that need a call (both splits: nothing here is tuned),
each streamed in real time (20 ms frames, as the peer harness does) into `/v1/realtime` of
a `speechllm serve` started with its defaults, one fresh session per request; times from
the frame that holds the last speech sample.

    ./dev python bench/tools_realtime.py [--limit N] [-- serve args]

Two blocks, each after an untimed warm-up session (a session's prompt prefix stays the
same, so the LLM's cache holds it; switching between a prompt with the tools' descriptions
and one without costs a full prefill that a running session never pays):
  call:  the catalogue's ten tools offered, tool_choice auto: the first
         `response.function_call_arguments.delta` and the `.done` with the whole arguments
  text:  the same requests with tool_choice "none": the first `response.text.delta` and the
         first `response.audio.delta` of the spoken answer
Both are held while the server answers speculatively and sent when the turn ends, so the
end silence (`speech_stopped`) is printed too. Prints medians and paired differences with
95% bootstrap intervals.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from barge_in import pcm16, start_server
from pause_set import trimmed
from tools_latency import ci

from speechllm.audio import load
from speechllm.data import read_manifest
from speechllm.eval.tool_catalog import CATALOG

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
FRAME = 320  # 20 ms
TOOLS = [{"type": "function", "name": t.name, "description": t.description,
          "parameters": dict(t.parameters)} for t in CATALOG]
MARKS = {"response.function_call_arguments.delta": "call_first",
         "response.function_call_arguments.done": "call", "response.text.delta": "text_first",
         "response.audio.delta": "audio_first", "input_audio_buffer.speech_stopped": "stopped",
         "response.done": "done"}


async def session(url: str, speech: np.ndarray, choice: str) -> dict[str, float]:
    """One request in a fresh session: seconds from the end of speech to each mark."""
    import websockets

    marks: dict[str, float] = {}
    finished = asyncio.Event()
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()  # session.created
        await ws.send(json.dumps({"type": "session.update",
                                  "session": {"tools": TOOLS, "tool_choice": choice}}))
        await ws.recv()  # session.updated

        async def receive() -> None:
            async for raw in ws:
                kind = json.loads(raw)["type"]
                if kind in MARKS:
                    marks.setdefault(MARKS[kind], time.perf_counter())
                if kind in ("response.done", "error"):
                    finished.set()

        receiver = asyncio.create_task(receive())
        mic = np.concatenate([np.zeros(int(0.3 * RATE), np.float32), speech])
        last_speech_frame = (len(mic) - 1) // FRAME
        mic = np.concatenate([mic, np.zeros(int(6 * RATE), np.float32)])
        start, ended = time.perf_counter(), 0.0
        for i in range(len(mic) // FRAME):
            await ws.send(pcm16(mic[i * FRAME:(i + 1) * FRAME]))
            if i == last_speech_frame:
                ended = time.perf_counter()
            if finished.is_set():
                break
            await asyncio.sleep(max(0.0, start + (i + 1) * FRAME / RATE - time.perf_counter()))
        await asyncio.wait_for(finished.wait(), 30)
        receiver.cancel()
    return {k: v - ended for k, v in marks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("serve_args", nargs="*")
    args = parser.parse_args()
    items = [it for it in read_manifest(ROOT / "data/tools/manifest.jsonl")
             if it.fields.get("call") and it.fields.get("voice") == "piper"
             and it.fields.get("snr") == "clean"][: args.limit]
    speech = [trimmed(load(it.audio, RATE)).samples for it in items]
    server, url = start_server(args)
    try:
        runs: dict[str, list[dict[str, float]]] = {}
        for block, choice in (("call", "auto"), ("text", "none")):
            asyncio.run(session(url, speech[-1], choice))  # warm-up: the prefix cached
            runs[block] = [asyncio.run(session(url, x, choice)) for x in speech]
            print(block, json.dumps(runs[block]), file=sys.stderr)
    finally:
        server.terminate()
        server.wait(30)
    pairs = [(c, t) for c, t in zip(runs["call"], runs["text"], strict=True)
             if "call" in c and "text_first" in t and "audio_first" in t]
    print(f"{len(pairs)} of {len(items)} requests called a tool (auto) and were answered in "
          "speech (tool_choice none)\n")
    series: dict[str, list[float]] = {
        "turn ended (speech_stopped), call sessions": [c["stopped"] for c, _ in pairs],
        "call: first arguments delta": [c.get("call_first", np.nan) for c, _ in pairs],
        "call: arguments done": [c["call"] for c, _ in pairs],
        "turn ended (speech_stopped), text sessions": [t["stopped"] for _, t in pairs],
        "text answer: first text delta": [t["text_first"] for _, t in pairs],
        "text answer: first audio": [t["audio_first"] for _, t in pairs],
    }
    print("| seconds from the end of speech | median [95% CI] |")
    print("|---|---|")
    for name, xs in series.items():
        a = np.array(xs, float)
        lo, hi = ci(a)
        print(f"| {name} | {np.median(a):.3f} [{lo:.3f}, {hi:.3f}] |")
    print("\n| paired difference (median of per-request differences) | median [95% CI] |")
    print("|---|---|")
    for a_name, b_name in (("call: arguments done", "text answer: first text delta"),
                           ("call: arguments done", "text answer: first audio")):
        d = np.array(series[a_name], float) - np.array(series[b_name], float)
        lo, hi = ci(d)
        print(f"| {a_name} minus {b_name} | {np.median(d):+.3f} [{lo:+.3f}, {hi:+.3f}] |")


if __name__ == "__main__":
    main()
