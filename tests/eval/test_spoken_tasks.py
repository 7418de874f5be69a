"""Translation and open dialogue through the real cascade and the runner, on speech made with
the local Piper voice (deterministic settings)."""

from __future__ import annotations

from speechllm.audio import load, save
from speechllm.data import Item
from speechllm.eval import runner
from speechllm.eval.backends import Job, Serial
from speechllm.eval.journal import Journal
from speechllm.eval.report import write_report
from speechllm.eval.tasks import DialogueTask, TranslationTask

from ..conftest import say


def spoken(tmp_path, voice, texts: list[str], **fields) -> list[Item]:
    items = []
    for n, text in enumerate(texts, 1):
        path = tmp_path / f"{n}.wav"
        save(say(voice, text), path)
        items.append(Item(path, text, {k: v[n - 1] for k, v in fields.items()}, n))
    return items


def test_translation_run_scores_the_llm_translation(tmp_path, voice, cascade):
    items = spoken(tmp_path, voice, ["Good morning.", "Thank you very much."],
                   translation=["Bonjour.", "Merci beaucoup."], target=["French", "French"])
    journal = Journal(tmp_path / "runs.sqlite")
    summary = runner.run(Job(lambda: cascade, TranslationTask()), items, journal, "tr",
                         {"task": "translate"}, Serial(cascade))
    assert summary.errors == 0
    rows = journal.rows("tr")
    assert [r.reference for r in rows] == ["Bonjour.", "Merci beaucoup."]
    said = " ".join(r.prediction or "" for r in rows).lower()
    assert "merci" in said or "bonjour" in said, said  # it translated, not echoed English
    assert summary.metrics["chrf"] > 20


def test_dialogue_run_keeps_answers_and_audio_for_the_report(tmp_path, voice, cascade):
    items = spoken(tmp_path, voice, ["What colour is the sky on a clear day?"])
    journal = Journal(tmp_path / "runs.sqlite")
    summary = runner.run(Job(lambda: cascade, DialogueTask(max_tokens=40)), items, journal,
                         "chat", {"task": "dialogue"}, Serial(cascade))
    assert summary.errors == 0 and summary.metrics["answered"] == 1.0
    row = journal.rows("chat")[0]
    assert "blue" in (row.prediction or "").lower()
    kept = load(row.audio or "")
    assert kept.duration > 0.5  # the spoken answer, saved beside the journal
    report = write_report(journal, ["chat"], tmp_path / "rep", resamples=50).path.read_text()
    assert row.prediction in report and "[wav](" in report


def test_tool_call_run_scores_spoken_requests_with_their_own_tools(tmp_path, voice, cascade):
    from speechllm.eval.tasks import ToolCallTask

    lights = {"type": "function", "function": {
        "name": "set_lights", "description": "Set the brightness of the lights in a room.",
        "parameters": {"type": "object", "required": ["room", "level"], "properties": {
            "room": {"type": "string", "enum": ["kitchen", "bedroom"]},
            "level": {"type": "integer", "minimum": 0, "maximum": 100}}}}}
    items = spoken(tmp_path, voice, ["Turn off the lights in the kitchen.",
                                     "What is the capital of France?"],
                   call=[{"name": "set_lights", "arguments": {"room": "kitchen", "level": 0}},
                         None], tools=[[lights], [lights]])
    journal = Journal(tmp_path / "runs.sqlite")
    summary = runner.run(Job(lambda: cascade, ToolCallTask()), items, journal, "tools",
                         {"task": "tools"}, Serial(cascade))
    assert summary.errors == 0
    rows = journal.rows("tools")
    assert '"set_lights"' in (rows[0].prediction or "") and rows[0].scores["exact"] == 1.0
    assert rows[1].prediction.startswith("no call") and "paris" in rows[1].prediction.lower()
    assert summary.metrics["exact"] == 1.0 and summary.metrics["false_call"] == 0.0
