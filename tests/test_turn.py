"""End-of-turn signals: the transcript's last word, and Smart Turn v3.2 on real audio (the
ONNX model read out of the pipecat-ai wheel at set-up)."""

from __future__ import annotations

import pytest

from speechllm.audio import Audio, load
from speechllm.errors import AudioError
from speechllm.turn.text import looks_unfinished

from .conftest import ROOT, say


def test_a_transcript_ending_on_a_dangling_word_reads_unfinished():
    for text in ("What is the capital of", "Can you tell me how to?", "Set a timer for.",
                 "Add eggs and", "I was thinking,", "and then..."):
        assert looks_unfinished(text), text
    for text in ("What is the capital of France?", "Where are you from?", "What time is it",
                 "Set a timer for 10 minutes.", ""):
        assert not looks_unfinished(text), text


def test_smart_turn_hears_a_finished_question_and_a_trailing_preposition(voice):
    from speechllm.turn.smart_turn import SmartTurn

    model = SmartTurn()
    question = load(ROOT / "examples" / "question.wav")
    pause = Audio.silence(0.2, question.sample_rate)
    assert model.complete(Audio.concat([question, pause])) > 0.8
    fragment = say(voice, "I would like to know the weather in", pad=0.0)
    assert model.complete(Audio.concat([fragment, Audio.silence(0.2, fragment.sample_rate)])
                          ) < 0.2
    assert model.features(question).shape == (1, 80, 800)  # the last 8 s, 100 frames a second
    with pytest.raises(AudioError):
        model.complete(Audio.silence(0.0))
