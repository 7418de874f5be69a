from __future__ import annotations

import jiwer
import numpy as np
import pytest

from speechllm.asr.base import ASROptions
from speechllm.tts.base import synthesize

SENTENCE = "The quick brown fox jumps over the lazy dog."


def _words(text: str) -> str:
    return jiwer.RemovePunctuation()(text.lower()).strip()


def test_piper_round_trip_through_whisper(piper, asr):
    speech = synthesize(piper, SENTENCE)
    assert speech.sample_rate == 22050 and 1.5 < speech.duration < 6
    heard = asr.transcribe(speech, ASROptions(language="en")).text
    # The default voice samples its prosody, so allow one word in nine to vary.
    assert jiwer.wer(_words(SENTENCE), _words(heard)) <= 1 / 9


def test_piper_on_one_thread_still_speaks_the_text(asr):
    # the synth workers' setting: onnxruntime's session rebuilt with one thread
    from speechllm.tts.piper import PiperOptions, PiperTTS

    voice = PiperTTS(options=PiperOptions(threads=1))
    assert voice._voice.session.get_session_options().intra_op_num_threads == 1
    heard = asr.transcribe(synthesize(voice, SENTENCE), ASROptions(language="en")).text
    assert jiwer.wer(_words(SENTENCE), _words(heard)) <= 1 / 9


def test_piper_sets_espeaks_voice_once_not_per_text(asr, monkeypatch):
    # espeak-ng leaks ~1.3 KB each time a voice is set, and piper sets it for every text:
    # a server answering all day must set it once (tts/piper.py), and still speak right
    from piper import espeakbridge

    from speechllm.tts.piper import PiperOptions, PiperTTS

    real, calls = espeakbridge.set_voice, []

    def counting(voice: str) -> None:
        calls.append(voice)
        real(voice)

    monkeypatch.setattr(espeakbridge, "set_voice", counting)
    voice = PiperTTS(options=PiperOptions(threads=1))
    texts = ["Hello there.", "How are you today?", SENTENCE]
    spoken = [synthesize(voice, text) for text in texts]
    assert calls == ["en-us"]
    heard = asr.transcribe(spoken[-1], ASROptions(language="en")).text
    assert jiwer.wer(_words(SENTENCE), _words(heard)) <= 1 / 9


def test_piper_streams_one_chunk_per_sentence(piper):
    chunks = list(piper.stream("First sentence here. And a second one!"))
    assert len(chunks) == 2
    assert all(np.abs(c.samples).max() > 0.05 for c in chunks)


def test_espeak_round_trip_through_whisper(asr):
    from speechllm.tts.espeak import EspeakTTS

    speech = synthesize(EspeakTTS(), SENTENCE)
    heard = asr.transcribe(speech, ASROptions(language="en")).text
    assert jiwer.wer(_words(SENTENCE), _words(heard)) <= 0.25


def test_espeak_variants_change_the_voice_and_unknown_names_are_refused():
    from speechllm.errors import ModelError
    from speechllm.tts.espeak import EspeakOptions, EspeakTTS

    def said(voice: str) -> np.ndarray:
        return synthesize(EspeakTTS(EspeakOptions(voice)), "zero").samples

    # espeak-ng itself speaks "en-gb+f4" as plain en-gb (en-gb's voice file is named "en")
    for voice in ("en-gb", "en-us"):
        plain = said(voice)
        for variant in ("f4", "m3"):
            other = said(f"{voice}+{variant}")
            assert other.shape != plain.shape or not np.array_equal(other, plain), variant
    assert np.array_equal(said("en-gb"), said("en-gb"))  # and it is deterministic
    for bad in ("no-such-voice", "en-gb+zzz"):  # espeak-ng: Norwegian; plain en-gb
        with pytest.raises(ModelError, match="espeak-ng has no voice"):
            EspeakTTS(EspeakOptions(bad))


def test_empty_text_gives_no_audio(piper):
    assert list(piper.stream("   ")) == []
