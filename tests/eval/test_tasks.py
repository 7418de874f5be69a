from __future__ import annotations

from pathlib import Path

import pytest

from speechllm.eval.journal import Journal, Row
from speechllm.eval.manifest import Item
from speechllm.eval.runner import summarize
from speechllm.eval.tasks import ASRTask, DigitLabelTask, SpokenQATask, make_task
from speechllm.speechlm import Response
from speechllm.timing import Timings


def reply(text: str, transcript: str | None = None) -> Response:
    return Response(text, transcript, None, Timings())


def item(text: str | None = None, **fields) -> Item:
    return Item(Path("/x.wav"), text, fields)


def test_asr_scores_the_transcript_with_numerals_normalised():
    task = ASRTask()
    pred, s = task.score(item("set a timer for 9 minutes"),
                         reply("Sure!", "Set a timer for nine minutes."))
    assert pred == "Set a timer for nine minutes." and s["word_errors"] == 0
    _, s = task.score(item("turn on the light"), reply("", "turn off the lights"))
    assert s == {"word_errors": 2, "ref_words": 4, "cer": pytest.approx(3 / 14)}


def test_digit_label_and_qa():
    _, s = DigitLabelTask().score(item(digit=8), reply("ok", "Eight."))
    assert s["correct"] == 1.0
    _, s = DigitLabelTask().score(item(digit=8), reply("ok", "Eat."))
    assert s["correct"] == 0.0
    qa = SpokenQATask()
    assert qa.score(item(answer="Paris"), reply("Paris."))[1] == {"exact": 1.0, "contains": 1.0}
    assert qa.score(item(answer="Paris"), reply("It is Paris, France."))[1] == {
        "exact": 0.0, "contains": 1.0}
    assert qa.score(item(answer="5"), reply("The answer is five."))[1]["contains"] == 1.0
    with pytest.raises(ValueError, match="choose one of"):
        make_task("summarise")


def test_summary_wer_is_corpus_level(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    j.start("r", {"a": 1})
    j.record("r", Row("1", "x", {"word_errors": 1, "ref_words": 10, "cer": 0.1}, {}, None))
    j.record("r", Row("2", "y", {"word_errors": 3, "ref_words": 2, "cer": 0.5}, {}, None))
    j.record("r", Row("3", None, {}, {}, "NoSpeechError: silence"))
    s = summarize(j, "r")
    assert s.items == 3 and s.errors == 1
    assert s.metrics["wer"] == pytest.approx(4 / 12)  # not the mean of 0.1 and 1.5
    with pytest.raises(ValueError, match="another configuration"):
        j.start("r", {"a": 2})
