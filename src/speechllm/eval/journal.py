"""The run journal: every finished item is written to SQLite at once, so a killed run
resumes with nothing lost and nothing done twice."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run TEXT PRIMARY KEY, config TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    run TEXT NOT NULL REFERENCES runs(run),
    item TEXT NOT NULL,
    prediction TEXT,
    scores TEXT,
    timings TEXT,
    error TEXT,
    reference TEXT,
    audio TEXT,
    PRIMARY KEY (run, item)
);
"""


@dataclass(frozen=True)
class Row:
    item: str
    prediction: str | None
    scores: dict[str, float]
    timings: dict[str, Any]
    error: str | None
    reference: str | None = None  # what the prediction is scored against (corpus metrics)
    audio: str | None = None  # path of the spoken answer, for tasks that keep it


class Journal:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        self._db.executescript(SCHEMA)

    def start(self, run: str, config: dict[str, Any]) -> None:
        """Create the run, or check that a resumed run has the same configuration."""
        import time

        text = json.dumps(config, sort_keys=True)
        found = self._db.execute("SELECT config FROM runs WHERE run = ?", (run,)).fetchone()
        if found is None:
            with self._db:
                self._db.execute("INSERT INTO runs VALUES (?, ?, ?)", (run, text, time.time()))
        elif found[0] != text:
            raise ValueError(f"run {run!r} exists with another configuration; "
                             "pick a new run name to change settings")

    def done(self, run: str) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT item FROM items WHERE run = ?", (run,))}

    def record(self, run: str, row: Row) -> None:
        with self._db:  # one transaction per item: committed before the next one starts
            self._db.execute(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run, row.item, row.prediction, json.dumps(row.scores),
                 json.dumps(row.timings), row.error, row.reference, row.audio))

    def rows(self, run: str) -> list[Row]:
        cur = self._db.execute(
            "SELECT item, prediction, scores, timings, error, reference, audio FROM items "
            "WHERE run = ? ORDER BY rowid", (run,))
        return [Row(i, p, json.loads(s), json.loads(t), e, r, a)
                for i, p, s, t, e, r, a in cur]

    def runs(self) -> dict[str, dict[str, Any]]:
        """Every run's configuration, oldest first."""
        cur = self._db.execute("SELECT run, config FROM runs ORDER BY created")
        return {r: json.loads(c) for r, c in cur}

    def config(self, run: str) -> dict[str, Any]:
        found = self._db.execute("SELECT config FROM runs WHERE run = ?", (run,)).fetchone()
        if found is None:
            known = ", ".join(self.runs()) or "none"
            raise KeyError(f"no run {run!r} in {self.path} (runs: {known})")
        config: dict[str, Any] = json.loads(found[0])
        return config

    def close(self) -> None:
        self._db.close()
