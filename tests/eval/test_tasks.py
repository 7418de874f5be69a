from __future__ import annotations

from pathlib import Path

import pytest

from speechllm.audio import Audio
from speechllm.data import Item
from speechllm.eval.journal import Journal, Row
from speechllm.eval.runner import summarize
from speechllm.eval.tasks import (
    ASRTask,
    DialogueTask,
    DigitLabelTask,
    SpokenQATask,
    TranslationTask,
    make_task,
)
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
    j.start("r", {"task": "asr"})
    j.record("r", Row("1", "x", {"word_errors": 1, "ref_words": 10, "cer": 0.1}, {}, None))
    j.record("r", Row("2", "y", {"word_errors": 3, "ref_words": 2, "cer": 0.5}, {}, None))
    j.record("r", Row("3", None, {}, {}, "NoSpeechError: silence"))
    s = summarize(j, "r")
    assert s.items == 3 and s.errors == 1
    assert s.metrics["wer"] == pytest.approx(4 / 12)  # not the mean of 0.1 and 1.5
    with pytest.raises(ValueError, match="another configuration"):
        j.start("r", {"task": "asr", "seed": 2})


def rows(task, pairs) -> list[Row]:
    out = []
    for n, (ref, hyp) in enumerate(pairs):
        it = item(None, translation=ref)
        pred, scores = task.score(it, reply(hyp))
        out.append(Row(str(n), pred, scores, {}, None, task.reference(it)))
    return out


def test_translation_is_scored_with_corpus_bleu_and_chrf():
    task = TranslationTask()
    refs = ["the cat sits on the mat", "it is raining in paris today"]
    assert task.metrics(rows(task, zip(refs, refs, strict=True))) == {
        "bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}
    partly = task.metrics(rows(task, zip(refs, ["the cat sat on a mat", "rain in paris"],
                                        strict=True)))
    assert 0 < partly["bleu"] < 60 and 0 < partly["chrf"] < 80
    wrong = task.metrics(rows(task, zip(refs, ["hello", "good night"], strict=True)))
    assert wrong["bleu"] < 5 and wrong["chrf"] < partly["chrf"]
    with pytest.raises(ValueError, match="translation"):
        task.reference(item("hola"))
    request = task.request(item(None, translation="bonjour", target="French"),
                           Audio.silence(1.0))
    assert "French" in (request.system or "") and not request.want_audio


def test_dialogue_keeps_the_answer_and_asks_for_audio():
    task = DialogueTask()
    assert task.keep_audio
    pred, scores = task.score(item("hi"), reply("Hello there, how can I help?"))
    assert pred == "Hello there, how can I help?"
    assert scores["answered"] == 1.0 and scores["answer_words"] == 6


def test_tool_task_scores_function_and_arguments_as_a_user_would():
    from speechllm.eval.tasks import ToolCallTask
    from speechllm.tools import ToolCall

    task = ToolCallTask()
    timer = {"name": "set_timer", "arguments": {"minutes": 10, "label": "pasta"}}
    weather = {"name": "get_weather", "arguments": {"city": "Lisbon"}}

    def called(name: str, arguments: str, heard: str = "x") -> Response:
        return Response("", heard, None, Timings(),
                        tool_calls=(ToolCall("call_1", name, arguments),))

    cases = [  # (expected call, response, right function, exact)
        (timer, called("set_timer", '{"minutes": 10, "label": "Pasta Timer"}'), 1, 1),
        (timer, called("set_timer", '{"minutes": 10.0, "label": "pasta"}'), 1, 1),
        (timer, called("set_timer", '{"minutes": 12, "label": "pasta"}'), 1, 0),
        (timer, called("set_timer", '{"minutes": 10, "label": "laundry"}'), 1, 0),
        (timer, called("get_weather", '{"city": "Rome"}'), 0, 0),
        (timer, reply("Sure, ten minutes.", "x"), 0, 0),
        # an optional argument left out equals its default; one added at its default is fine
        (weather, called("get_weather", '{"city": "lisbon", "day": "today"}'), 1, 1),
        ({"name": "get_weather", "arguments": {"city": "Lisbon", "day": "today"}},
         called("get_weather", '{"city": "Lisbon"}'), 1, 1),
        ({"name": "get_weather", "arguments": {"city": "Lisbon", "day": "tomorrow"}},
         called("get_weather", '{"city": "Lisbon"}'), 1, 0),
        (None, reply("Paris.", "x"), 1, 1),
        (None, called("get_weather", '{"city": "Paris"}'), 0, 0),
    ]
    rows = []
    for n, (expected, response, right, exact) in enumerate(cases):
        it = item("set a timer for ten minutes", call=expected)
        _, s = task.score(it, response)
        assert (s["right_function"], s["exact"]) == (right, exact), n
        rows.append(Row(str(n), "", s, {}, None, task.reference(it)))
    m = task.metrics(rows)
    assert m["false_call"] == 0.5 and m["missed_call"] == pytest.approx(1 / 9)
    assert m["exact:none"] == 0.5 and m["exact:set_timer"] == pytest.approx(2 / 6)
