"""Cascade latency: streaming TTS vs the classic wait-for-the-whole-answer cascade, plus the
whole-process peak memory and launch-to-first-audio of `speechllm chat`.

Both configurations use the same loaded models and greedy decoding with the LLM's prefix cache
off, so they produce the same answer; runs alternate between them to spread machine noise
evenly. ttfa is measured from the
moment the whole spoken question is available (see speechllm.timing).

    .venv/bin/python bench/cascade_latency.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from speechllm.asr.faster_whisper import FasterWhisperASR
from speechllm.cascade.pipeline import CascadeConfig, CascadeSpeechLM
from speechllm.llm.base import GenerationOptions
from speechllm.llm.llama_cpp import LlamaConfig, LlamaCppChat
from speechllm.speechlm import Request
from speechllm.tts.base import synthesize
from speechllm.tts.espeak import EspeakOptions, EspeakTTS
from speechllm.tts.piper import PiperTTS
from speechllm.vad.silero import SileroVAD

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "Tell me about the moon.",
    "Why is the sky blue?",
    "How do bees make honey?",
    "What should I pack for a beach trip?",
    "Explain how a bicycle works.",
    "Give me some tips for sleeping better.",
    "Describe how rain forms.",
    "What are the benefits of regular exercise?",
    "How does a refrigerator keep food cold?",
    "Tell me about the city of Rome.",
]
SYSTEM = "You are a helpful voice assistant. Answer in three short sentences of plain text."


def sentences(text: str) -> int:
    return len([s for s in re.split(r"[.!?]+\s", text.strip() + " ") if s.strip()])


def latency(rounds: int) -> None:
    piper = PiperTTS()
    # Questions in a different voice (espeak) from the answers (Piper).
    asker = EspeakTTS(EspeakOptions(voice="en-us", speed=150))
    spoken = [synthesize(asker, q) for q in QUESTIONS]
    llm = LlamaCppChat(config=LlamaConfig(prefix_cache=False))
    base = CascadeSpeechLM(FasterWhisperASR("whisper-base"), llm, piper, SileroVAD(),
                           config=CascadeConfig(system=SYSTEM,
                                                generation=GenerationOptions(max_tokens=120)))
    classic = CascadeSpeechLM(base.asr, base.llm, base.tts, base.vad,
                              config=replace(base.config, stream_tts=False))
    base.respond(Request(audio=spoken[0]))  # warm-up: first calls allocate buffers
    rows = []
    for r in range(rounds):
        for q, audio in zip(QUESTIONS, spoken, strict=True):
            order = [("stream", base), ("classic", classic)]
            if r % 2:
                order.reverse()
            got = {name: lm.respond(Request(audio=audio)) for name, lm in order}
            rows.append((q, got["stream"], got["classic"]))
    print(f"\n## Streaming vs non-streaming ttfa ({rounds} rounds x {len(QUESTIONS)} questions)\n")
    print("| question | sentences | ttft s | ttfa stream s | ttfa classic s | ratio |")
    print("|---|---|---|---|---|---|")
    ratios, multi = [], []
    for q in QUESTIONS:
        mine = [(s, c) for qq, s, c in rows if qq == q]
        ts = statistics.median(s.timings.ttfa for s, _ in mine)
        tc = statistics.median(c.timings.ttfa for _, c in mine)
        tf = statistics.median(s.timings.ttft for s, _ in mine)
        n = sentences(mine[0][0].text)
        same = all(s.text == c.text for s, c in mine)
        ratios.append(ts / tc)
        if n >= 2 and same:
            multi.append(ts / tc)
        print(f"| {q} | {n}{'' if same else ' (answers differ)'} | {tf:.2f} | {ts:.2f} | "
              f"{tc:.2f} | {ts / tc:.2f} |")
    print(f"\nmedian ratio streaming/classic ttfa, all answers: {statistics.median(ratios):.2f}")
    if multi:
        print(f"median ratio on answers of two or more sentences ({len(multi)} questions): "
              f"{statistics.median(multi):.2f}")
    stage_names = ["vad", "asr", "prefill", "decode", "tts"]
    print("\nmedian stage time, streaming run (s): " + ", ".join(
        f"{n} {statistics.median(s.timings.stage(n) for _, s, _ in rows):.2f}"
        for n in stage_names))


def whole_process(runs: int) -> None:
    exe = Path(sys.executable).parent / "speechllm"
    peaks, launches, totals = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            start = time.perf_counter()
            proc = subprocess.Popen([str(exe), "chat", str(ROOT / "examples/question.wav"),
                                     "-o", f"{tmp}/reply.wav", "--json"],
                                    stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            printed = time.perf_counter() - start
            proc.wait()
            totals.append(time.perf_counter() - start)
            record = json.loads(line)
            # First audio happened (total - ttfa) seconds before the result line was printed.
            launches.append(printed - (record["total"] - record["ttfa"]))
            peaks.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    print(f"\n## `speechllm chat examples/question.wav -o reply.wav` ({runs} runs)\n")
    print(f"- whole-process peak RSS: {max(peaks):.0f} MB")
    print(f"- launch to first answer audio: median {statistics.median(launches):.2f} s")
    print(f"- launch to exit: median {statistics.median(totals):.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}")
    whole_process(args.runs)  # first, while this process holds no models
    latency(args.rounds)


if __name__ == "__main__":
    main()
