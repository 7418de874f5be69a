"""Data the benchmarks share: the real FSDD recordings and the synthetic test voices."""

from __future__ import annotations

import json
from pathlib import Path

from speechllm.tts.base import TTS
from speechllm.tts.espeak import EspeakOptions, EspeakTTS
from speechllm.tts.piper import PiperTTS

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd-test"


def fsdd_items(every: int = 1) -> list[dict]:
    """FSDD test manifest rows (real speakers; evaluation only), every `every`-th one."""
    rows = [json.loads(x) for x in (FSDD / "manifest.jsonl").read_text().splitlines() if x]
    return rows[::every]


def test_voices() -> list[TTS]:
    """Three different voices: the Piper joe voice and two espeak-ng voices."""
    return [PiperTTS(), EspeakTTS(EspeakOptions("en-us", speed=165)),
            EspeakTTS(EspeakOptions("en-gb+f3", speed=150))]
