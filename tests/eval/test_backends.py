"""The same run through each backend (this thread, worker threads, a local Ray instance)
gives the same journal, and its WER recomputed independently with jiwer matches."""

from __future__ import annotations

import jiwer
import pytest

from speechllm.approach import Factory
from speechllm.data import read_manifest
from speechllm.eval import runner
from speechllm.eval.backends import Job, RayActors, Serial, Threads
from speechllm.eval.journal import Journal
from speechllm.eval.perturb import WhiteNoise
from speechllm.eval.tasks import ASRTask
from speechllm.text_norm import normalize

from ..conftest import FSDD

SETTINGS = {"approach": "cascade", "asr": "whisper-tiny.en", "tts": None}


@pytest.fixture(scope="module")
def items():
    return read_manifest(FSDD / "manifest.jsonl")[::50]  # 6 real recordings, spread out


def predictions(journal: Journal, name: str) -> dict[str, tuple[str | None, str | None]]:
    return {r.item: (r.prediction, r.error) for r in journal.rows(name)}


def test_serial_and_thread_pool_agree_and_wer_recomputes(tmp_path, items):
    job = Job(Factory.of(SETTINGS), ASRTask(), WhiteNoise(20.0), seed=3)
    journal = Journal(tmp_path / "runs.sqlite")
    serial = runner.run(job, items, journal, "serial", {"x": 1}, Serial())
    pooled = runner.run(job, items, journal, "pooled", {"x": 1}, Threads(2))
    assert serial.items == pooled.items == len(items) and serial.errors == 0
    assert predictions(journal, "serial") == predictions(journal, "pooled")
    assert serial.metrics == pooled.metrics

    # Corpus WER by hand: jiwer over the journal's references and predictions.
    rows = journal.rows("serial")
    refs = [normalize(r.reference or "") for r in rows]
    hyps = [normalize(r.prediction or "") for r in rows]
    assert serial.metrics["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    assert all(r.timings["total"] > 0 and r.timings["spans"] for r in rows)
    # A finished run does nothing more when run again.
    again = runner.run(job, items, journal, "serial", {"x": 1}, Serial())
    assert again.model_seconds == 0 and again.items == len(items)


def test_local_ray_instance_gives_the_same_journal(tmp_path, items):
    job = Job(Factory.of(SETTINGS), ASRTask())
    journal = Journal(tmp_path / "runs.sqlite")
    runner.run(job, items, journal, "serial", {"x": 1}, Serial())
    ray_backend = RayActors(None, workers=2, init_kwargs=(("num_cpus", 2),))
    summary = runner.run(job, items, journal, "ray", {"x": 1}, ray_backend)
    assert summary.items == len(items) and summary.errors == 0
    assert predictions(journal, "ray") == predictions(journal, "serial")


def test_a_model_that_cannot_load_stops_the_pool_with_its_error(tmp_path, items):
    bad = Job(Factory.of({**SETTINGS, "asr": str(tmp_path / "missing")}), ASRTask())
    with pytest.raises(Exception, match="missing"):
        runner.run(bad, items, Journal(tmp_path / "j.sqlite"), "bad", {"x": 1}, Threads(2))


def test_bad_approach_settings_name_the_field():
    with pytest.raises(ValueError, match="asr_model: not a cascade setting"):
        Factory.of({"approach": "cascade", "asr_model": "x"})
    with pytest.raises(ValueError, match="approach: unknown 'telepathy'"):
        Factory.of({"approach": "telepathy"})
