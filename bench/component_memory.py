"""Which component's memory creeps: one model in a loop on inputs of varied length, RSS
growth (after ten warm-up steps) read every 50 steps. A component that levels off shows the
same figure from some point on; one that creeps keeps rising.

    ./dev python bench/component_memory.py tts|vad|chat|asr [STEPS]

  tts   Piper speaking 3-25 random words
  vad   Silero judging 0.5-20 s of faint noise as a whole clip
  chat  the embedded LLM answering 3-12 random words (16 tokens)
  asr   Whisper transcribing a random-length cut of examples/question.wav
Linux only (VmRSS from /proc); glibc's mmap threshold is set as the server sets it.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while",
         "seven", "wizards", "quietly", "hum"]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def step_of(which: str, rng: np.random.Generator) -> Callable[[], object]:
    from speechllm.audio import Audio, load

    if which == "tts":
        from speechllm.tts.base import make_tts

        tts = make_tts("piper", None)
        return lambda: list(tts.stream(" ".join(rng.choice(WORDS, rng.integers(3, 25)))))
    if which == "vad":
        from speechllm.vad.silero import SileroVAD

        vad = SileroVAD()
        return lambda: vad.speech_probabilities(Audio(
            (0.01 * rng.standard_normal(rng.integers(8000, 16000 * 20))).astype(np.float32),
            16000))
    if which == "chat":
        from speechllm.llm.base import GenerationOptions
        from speechllm.llm.llama_cpp import LlamaCppChat
        from speechllm.speechlm import Message

        llm = LlamaCppChat()
        return lambda: "".join(llm.stream_chat(
            [Message("system", "Be brief."),
             Message("user", " ".join(rng.choice(WORDS, rng.integers(3, 12))))],
            GenerationOptions(max_tokens=16)))
    if which == "asr":
        from speechllm.asr.base import ASR_BACKENDS

        asr = ASR_BACKENDS.get("faster-whisper")("whisper-base")
        audio = load(ROOT / "examples" / "question.wav", 16000)
        return lambda: asr.transcribe(Audio(
            audio.samples[:rng.integers(len(audio) // 2, len(audio))], 16000))
    raise SystemExit(f"unknown component {which!r}: tts, vad, chat or asr")


def main(which: str, steps: int) -> None:
    ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX, as the server
    step = step_of(which, np.random.default_rng(0))
    for _ in range(10):
        step()
    gc.collect()
    start, began, marks = rss_mb(), time.perf_counter(), []
    for i in range(steps):
        step()
        if i % 50 == 49:
            gc.collect()
            marks.append(round(rss_mb() - start, 1))
    print(f"{which}: RSS growth (MB) after each 50 steps: {marks} "
          f"({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tts",
         int(sys.argv[2]) if len(sys.argv) > 2 else 300)
