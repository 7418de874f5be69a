"""A real evaluation run: the cascade on real FSDD recordings, killed and resumed."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from ..conftest import FSDD

EXE = Path(sys.executable).parent / "speechllm"


def journaled(db: Path) -> list[tuple[str, str | None, str | None]]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as con:
            query = "SELECT item, prediction, error FROM items ORDER BY rowid"
            return con.execute(query).fetchall()
    except sqlite3.OperationalError:  # table not created yet
        return []


def test_killed_run_resumes_with_nothing_lost_or_repeated(tmp_path):
    db = tmp_path / "runs.sqlite"
    cmd = [str(EXE), "eval", str(FSDD / "manifest.jsonl"), "--task", "digit", "--asr",
           "whisper-tiny.en", "--journal", str(db), "--run", "r", "--limit", "10"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while len(journaled(db)) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = journaled(db)
    assert 3 <= len(before) < 10, f"kill landed at {len(before)} items"

    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    after = journaled(db)
    assert len(after) == 10
    assert len({row[0] for row in after}) == 10  # nothing done twice
    assert after[: len(before)] == before  # nothing lost or redone

    # The harness's accuracy equals the one recomputed by hand from its predictions.
    manifest = [json.loads(x) for x in (FSDD / "manifest.jsonl").read_text().splitlines()][:10]
    truth = {f"{n}:{Path(m['audio']).name}": m["digit"] for n, m in enumerate(manifest, 1)}
    scored = [(item, pred) for item, pred, err in after if err is None]
    by_hand = sum(int(pred) == truth[item] for item, pred in scored) / len(scored)
    printed = finished.stdout.split("accuracy")[1].split()[0]
    assert float(printed) == round(by_hand, 4)
    assert "10 items" in finished.stdout
