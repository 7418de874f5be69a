from __future__ import annotations

import numpy as np
import pytest

from speechllm.audio import Audio
from speechllm.errors import NoSpeechError
from speechllm.vad.base import trim

from .conftest import say


def test_finds_speech_between_silences(vad, voice):
    speech = say(voice, "Turn on the kitchen lights.", pad=0.0).resample(16000)
    gap = Audio.silence(1.0)
    audio = Audio.concat([gap, speech, gap])
    regions = vad.regions(audio)
    assert regions, "no speech found"
    assert regions[0].start == pytest.approx(1.0, abs=0.25)
    assert regions[-1].end == pytest.approx(1.0 + speech.duration, abs=0.35)
    trimmed = trim(audio, vad)
    assert trimmed.duration < audio.duration - 1.2


def test_silence_and_noise_have_no_speech(vad):
    rng = np.random.default_rng(0)
    assert vad.regions(Audio.silence(2.0)) == []
    noise = Audio((0.01 * rng.standard_normal(32000)).astype(np.float32), 16000)
    with pytest.raises(NoSpeechError):
        trim(noise, vad)


def test_streaming_matches_whole_file(vad, voice):
    audio = say(voice, "One two three.").resample(16000)
    whole = vad.speech_probabilities(audio)
    stream = vad.stream()
    pieces: list[float] = []
    for start in range(0, len(audio), 700):  # chunk size unrelated to the 512-sample window
        pieces += stream.feed(audio.samples[start:start + 700])
    pieces += stream.feed(np.zeros((-len(audio)) % 512, np.float32))
    assert len(pieces) == len(whole)
    assert np.allclose(pieces, whole, atol=0.05)


def test_a_long_clip_is_judged_in_blocks_as_in_one_pass(vad, voice, monkeypatch):
    """Whole clips go through the model in blocks (bounded memory) with the state carried
    across: the same probabilities as one pass over the whole clip (the same operations in
    the same order, so equal to float32 rounding)."""
    import speechllm.vad.silero as silero

    speech = say(voice, "Turn on the kitchen lights and set a timer for ten minutes.")
    audio = Audio.concat([speech.resample(16000), Audio.silence(0.7)] * 24)
    assert len(audio) > 2.5 * silero.BLOCK * silero.WINDOW
    blocks = vad.speech_probabilities(audio)
    monkeypatch.setattr(silero, "BLOCK", 10**9)
    assert np.allclose(blocks, vad.speech_probabilities(audio), atol=1e-5, rtol=0)
