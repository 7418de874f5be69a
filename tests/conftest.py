"""Shared fixtures: the real embedded models (loaded once per session) and real recordings."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from speechllm.audio import Audio, load

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "data" / "fsdd-test"
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def fsdd_items(every: int = 1) -> list[dict]:
    """FSDD test recordings (real speakers); `every` thins the list evenly."""
    manifest = FSDD / "manifest.jsonl"
    if not manifest.is_file():
        pytest.fail(f"shared FSDD data missing at {manifest}")
    items = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return items[::every]


def heard_digit(text: str) -> int | None:
    """The digit a transcript names, as a word or a numeral ('Eight.', '8', 'eight')."""
    words = re.findall(r"[a-z]+|\d", text.lower())
    for w in words:
        if w.isdigit():
            return int(w)
        if w in DIGITS:
            return DIGITS.index(w)
    return None


@pytest.fixture(scope="session")
def asr():
    from speechllm.asr.faster_whisper import FasterWhisperASR
    return FasterWhisperASR("whisper-base")


@pytest.fixture(scope="session")
def chat_llm():
    from speechllm.llm.llama_cpp import LlamaCppChat
    return LlamaCppChat()


@pytest.fixture(scope="session")
def scorer():
    from speechllm.llm.llama_cpp import LlamaCppScorer
    return LlamaCppScorer()


@pytest.fixture(scope="session")
def piper():
    from speechllm.tts.piper import PiperTTS
    return PiperTTS()


@pytest.fixture(scope="session")
def voice():
    """The Piper voice with its sampling noise off: the same text gives the same audio on every
    run, so test inputs are reproducible (the default voice varies a little each time)."""
    from speechllm.tts.piper import PiperOptions, PiperTTS
    return PiperTTS(options=PiperOptions(noise_scale=0.0, noise_w_scale=0.0))


@pytest.fixture(scope="session")
def vad():
    from speechllm.vad.silero import SileroVAD
    return SileroVAD()


@pytest.fixture(scope="session")
def cascade(asr, chat_llm, piper, vad):
    from speechllm.cascade.pipeline import CascadeSpeechLM
    return CascadeSpeechLM(asr, chat_llm, piper, vad)


@pytest.fixture(scope="session")
def question() -> Audio:
    """A spoken question (the README demo's input)."""
    return load(ROOT / "examples" / "question.wav")


def say(piper, text: str, pad: float = 0.3) -> Audio:
    from speechllm.tts.base import synthesize
    speech = synthesize(piper, text)
    gap = Audio.silence(pad, speech.sample_rate)
    return Audio.concat([gap, speech, gap])


def espeak(text: str, voice: str = "en-us") -> bytes:
    """`text` read by espeak-ng (a robotic voice Whisper base finds hard), as WAV bytes."""
    return subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "--stdout", text],
                          capture_output=True, check=True).stdout
