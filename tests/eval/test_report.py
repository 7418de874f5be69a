"""Reports: real runs through the CLI, then `speechllm report`; comparison logic on journals
whose outcome is known by construction."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from speechllm.eval.journal import Journal, Row
from speechllm.eval.report import compare, load_runs, load_runs_from, write_report
from speechllm.eval.runner import summarize

from ..conftest import FSDD

EXE = Path(sys.executable).parent / "speechllm"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=600)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_report_from_real_runs_with_noise_sweep(tmp_path):
    db = tmp_path / "runs.sqlite"
    for perturb in (None, "noise:snr=10", "noise:snr=0"):
        args = ["eval", str(FSDD / "manifest.jsonl"), "--task", "asr", "--asr",
                "whisper-tiny.en", "--journal", str(db), "--limit", "8"]
        done = cli(*args, *(["--perturb", perturb] if perturb else []))
        assert done.returncode == 0, done.stderr
    done = cli("report", "--journal", str(db), "-o", str(tmp_path / "rep"), "--resamples", "200")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "rep" / "report.md").read_text()
    journal = Journal(db)
    for name in journal.runs():
        wer = summarize(journal, name).metrics["wer"]
        row = next(line for line in text.splitlines() if name.split("-")[-1] in line
                   and line.startswith("| cascade") and "[" in line)
        assert f"{wer:.3f}" in row  # the table shows the harness's own figure
    for png in ("snr.png", "latency.png", "waterfall.png"):
        width, height = png_size(tmp_path / "rep" / png)
        assert width >= 600 and height >= 200
        assert f"]({png})" in text
    assert re.search(r"\| cascade whisper-tiny.en .*\| clean \| [\d.]+ \| [\d.]+ \|", text)


def fake_run(journal: Journal, name: str, right: list[bool], ttft: float) -> None:
    journal.start(name, {"approach": "cascade", "task": "digit", "asr": name})
    for n, ok in enumerate(right):
        journal.record(name, Row(f"{n}:x.wav", "1" if ok else "2", {"correct": float(ok)},
                                 {"ttft": ttft + n * 0.001, "total": ttft + 0.5}, None, "1"))


def test_comparison_flags_a_real_drop_and_not_noise(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    fake_run(journal, "base", [True] * 40, 0.5)
    fake_run(journal, "same", [True] * 39 + [False], 0.5)
    fake_run(journal, "worse", [True] * 20 + [False] * 20, 0.9)
    base, same, worse = load_runs(journal, ["base", "same", "worse"])
    assert not any(c.regression for c in compare(base, same))
    flagged = {c.measure for c in compare(base, worse) if c.regression}
    assert flagged == {"accuracy", "ttft p50 (s)", "total p50 (s)"}
    assert {c.measure for c in compare(worse, base) if c.improvement} >= {"accuracy"}

    report = write_report(journal, ["base", "worse"], tmp_path / "rep", compare_runs=True,
                          resamples=200)
    assert "**REGRESSION** in accuracy" in report.path.read_text()
    assert set(report.regressions) == flagged  # what `report --compare` exits 6 on
    with pytest.raises(ValueError, match="exactly two runs"):
        write_report(journal, ["base", "same", "worse"], tmp_path / "r2", compare_runs=True)


def test_report_cli_errors_are_clear(tmp_path):
    done = cli("report", "--journal", str(tmp_path / "none.sqlite"))
    assert done.returncode == 1 and "no such journal" in done.stderr
    journal = Journal(tmp_path / "j.sqlite")
    fake_run(journal, "base", [True] * 5, 0.5)
    done = cli("report", "nope", "--journal", str(tmp_path / "j.sqlite"))
    assert done.returncode == 1 and "no run 'nope'" in done.stderr


def test_runs_of_two_journals_compare_and_name_their_journal(tmp_path):
    """Two recipe runs keep a journal each, often with the same run name: the report reads
    both, labels each row with its journal, and compares them."""
    before, after = Journal(tmp_path / "before.sqlite"), Journal(tmp_path / "after.sqlite")
    fake_run(before, "digits", [True] * 40, 0.5)
    fake_run(after, "digits", [True] * 20 + [False] * 20, 0.5)
    done = cli("report", "--journal", str(before.path), "--journal", str(after.path),
               "--compare", "-o", str(tmp_path / "rep"), "--resamples", "200")
    assert done.returncode == 6, done.stderr  # the regression is flagged
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "**REGRESSION** in accuracy" in text
    rows = [line for line in text.splitlines() if line.startswith("| cascade")]
    assert any(f"({before.path})" in r and "1.000" in r for r in rows)
    assert any(f"({after.path})" in r and "0.500" in r for r in rows)
    # a plain name held by both is refused with the way out; JOURNAL:RUN picks one
    done = cli("report", "digits", "--journal", str(before.path), "--journal",
               str(after.path), "-o", str(tmp_path / "r2"))
    assert done.returncode == 3 and "JOURNAL:RUN" in done.stderr
    (picked,) = load_runs_from([before, after], [f"{after.path}:digits"])
    assert picked.task.metrics(picked.rows)["accuracy"] == 0.5
    with pytest.raises(KeyError, match="no run 'nope'"):
        load_runs_from([before, after], ["nope"])
