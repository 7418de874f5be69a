"""When a tool call's arguments reach the client, against when a text answer's first clause
would: the same spoken requests (the benchmark's clean Piper ones that need a call, both
splits: nothing here is tuned) through the embedded cascade with TTS, timed from the moment
the request's audio is in hand.

    ./dev python bench/tools_latency.py [N]

In one sitting. llama.cpp keeps one prompt prefix cached, and the tools' descriptions make
the prompt ~800 tokens, so switching between a prompt with tools and one without costs a
full prefill that a running session, whose prefix stays the same, never pays: text answers
without tools run on a second copy of the LLM, so that the settings compared in pairs run
back to back for each request (the machine's load drifts over minutes); each setting starts
with an untimed warm-up request.
  call, constrained: seconds until the checked call (`ToolCallEvent`), and until its first
                     argument piece; each request is also run, right before, with the
                     LLM's guesses off (`LlamaConfig.guess_tokens = 0`: one token a step,
                     the decoding before speculation)
  text answer:       the same request with tool_choice "none", right after: seconds until
                     the first clause's text is ready for TTS, and until its audio (ttfa)
  call, free:        (a block after) seconds until the checked call (free decoding: no
                     pieces before it)
  text with tools:   (a block after) the benchmark's clean Piper requests that need no tool,
                     tools offered: the first clause's text and audio when the model answers
                     in speech
Prints medians and paired median differences with 95% bootstrap intervals.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from speechllm.audio import load
from speechllm.cascade.build import CascadeSpec, build_cascade
from speechllm.cascade.pipeline import CascadeSpeechLM
from speechllm.data import read_manifest
from speechllm.eval.tool_catalog import CATALOG
from speechllm.llm.llama_cpp import LlamaCppChat
from speechllm.speechlm import AudioChunk, Done, Request, ToolCallDelta, ToolCallEvent

ROOT = Path(__file__).resolve().parents[1]


async def timed(lm, request: Request) -> dict[str, float]:
    start, out = time.perf_counter(), {}
    async for event in lm.stream(request):
        now = time.perf_counter() - start
        if isinstance(event, ToolCallDelta) and event.arguments and "first_piece" not in out:
            out["first_piece"] = now
        elif isinstance(event, ToolCallEvent):
            out.setdefault("call", now)
        elif isinstance(event, AudioChunk):
            out.setdefault("ttfa", now)
        elif isinstance(event, Done):
            tts = [s for s in event.response.timings.spans if s.name == "tts"]
            if tts:
                out["first_clause"] = tts[0].start  # the clause is written; TTS starts
    return out


def ci(xs: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    meds = [np.median(xs[rng.integers(0, len(xs), len(xs))]) for _ in range(2000)]
    return float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))


def main(n: int = 30) -> None:
    items = [it for it in read_manifest(ROOT / "data/tools/manifest.jsonl")
             if it.fields.get("call") and it.fields.get("voice") == "piper"
             and it.fields.get("snr") == "clean"][:n]
    constrained = build_cascade(CascadeSpec())
    c = constrained  # the same models, free decoding
    free = CascadeSpeechLM(c.asr, c.llm, c.tts, c.vad, None,
                           replace(c.config, constrained_tools=False))
    plain = [it for it in read_manifest(ROOT / "data/tools/manifest.jsonl")
             if not it.fields.get("call") and it.fields.get("voice") == "piper"
             and it.fields.get("snr") == "clean"]
    texts = CascadeSpeechLM(c.asr, LlamaCppChat(), c.tts, c.vad, None, c.config)
    requests = [Request(audio=load(it.audio, 16000), tools=CATALOG) for it in items]
    blocks = {"call_c": (constrained, requests), "call_f": (free, requests),
              "plain": (constrained, [Request(audio=load(it.audio, 16000), tools=CATALOG)
                                      for it in plain])}
    timings: dict[str, list[dict[str, float]]] = {"call_c0": [], "text": []}
    asyncio.run(timed(texts, replace(requests[-1], tool_choice="none")))  # its warm-up
    for name, (lm, batch) in blocks.items():
        asyncio.run(timed(lm, batch[-1]))  # warm-up: this block's prompt prefix cached
        timings[name] = []
        for r in batch:
            if name == "call_c":  # the same request one token a step, just before
                llm, config = lm.llm, lm.llm.config
                llm.config = replace(config, guess_tokens=0)
                timings["call_c0"].append(asyncio.run(timed(lm, r)))
                llm.config = config
            timings[name].append(asyncio.run(timed(lm, r)))
            if name == "call_c":  # and as a text answer, just after
                timings["text"].append(asyncio.run(timed(texts, replace(r, tool_choice="none"))))
        print(name, json.dumps(timings[name]), file=sys.stderr)
    for name in ("call_c0", "text"):
        print(name, json.dumps(timings[name]), file=sys.stderr)
    rows = [{k: timings[k][i] for k in ("call_c", "call_c0", "call_f", "text")}
            for i in range(len(items))]
    ok = [r for r in rows if "call" in r["call_c"] and "call" in r["call_f"]
          and "call" in r["call_c0"] and "first_clause" in r["text"] and "ttfa" in r["text"]]
    print(f"{len(ok)} of {len(rows)} requests called a tool in both settings and answered "
          "in speech with tool_choice none\n")
    series = {
        "call arguments complete, constrained": [r["call_c"]["call"] for r in ok],
        "first argument piece, constrained": [r["call_c"].get("first_piece", np.nan) for r in ok],
        "call arguments complete, constrained, no guesses": [r["call_c0"]["call"] for r in ok],
        "call arguments complete, free": [r["call_f"]["call"] for r in ok],
        "text answer: first clause written": [r["text"]["first_clause"] for r in ok],
        "text answer: first audio (ttfa)": [r["text"]["ttfa"] for r in ok],
    }
    spoken = [t for t in timings["plain"] if "first_clause" in t and "ttfa" in t]
    extra = {f"no-tool requests, tools offered ({len(spoken)} answered in speech): "
             "first clause written": [t["first_clause"] for t in spoken],
             "no-tool requests, tools offered: first audio (ttfa)": [t["ttfa"] for t in spoken]}
    print("| seconds from the request's audio in hand | median [95% CI] |")
    print("|---|---|")
    for name, xs in {**series, **extra}.items():
        a = np.array(xs, float)
        lo, hi = ci(a)
        print(f"| {name} | {np.median(a):.3f} [{lo:.3f}, {hi:.3f}] |")
    print("\n| paired difference (median of per-request differences) | median [95% CI] |")
    print("|---|---|")
    for a_name, b_name in (("call arguments complete, constrained",
                            "text answer: first clause written"),
                           ("call arguments complete, constrained",
                            "text answer: first audio (ttfa)"),
                           ("call arguments complete, free",
                            "text answer: first clause written"),
                           ("call arguments complete, constrained, no guesses",
                            "text answer: first clause written"),
                           ("call arguments complete, constrained",
                            "call arguments complete, constrained, no guesses")):
        d = np.array(series[a_name], float) - np.array(series[b_name], float)
        lo, hi = ci(d)
        print(f"| {a_name} minus {b_name} | {np.median(d):+.3f} [{lo:+.3f}, {hi:+.3f}] |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
