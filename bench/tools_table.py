"""The spoken tool-call benchmark's tables (docs/tools.md) from a journal of `tools` runs:
each setting's figures with 95% bootstrap intervals, exact per tool and per voice/noise, and
paired differences against the first run.

    ./dev python bench/tools_table.py runs/tools.sqlite [--split test] [RUN ...]
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from dataclasses import replace
from pathlib import Path

from speechllm.data import read_manifest
from speechllm.eval.journal import Journal, Row
from speechllm.eval.report import RunData, bootstrap, compare, load_runs

ROOT = Path(__file__).resolve().parents[1]
HEAD = ("exact", "function", "call_exact", "false_call", "missed_call", "wer")


def fmt(value: float, ci: tuple[float, float] | None = None) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def conditions(manifest: Path) -> dict[str, dict[str, object]]:
    """Audio file name -> the item's fields (split, voice, snr)."""
    return {Path(it.audio).name: it.fields for it in read_manifest(manifest)}


def keep(run: RunData, journal: Journal, fields: dict[str, dict[str, object]],
         split: str) -> RunData:
    """The run's rows of `split`; an item that failed (the model's call refused by its
    schema) counts as a wrong call, not as missing."""
    rows = list(run.rows)
    for r in journal.rows(run.name):
        if r.error is not None:
            call = fields[r.item.split(":", 1)[1]].get("call")
            rows.append(Row(r.item, "error: " + r.error, {
                "needs_call": float(call is not None), "called": 1.0, "right_function": 0.0,
                "exact": 0.0, "several_calls": 0.0, "word_errors": 0.0, "ref_words": 0.0},
                r.timings, None, json.dumps(call, sort_keys=True)))
    rows = [replace(r, item=r.item.split(":", 1)[1]) for r in rows]  # ids: the audio file,
    # so runs over the test-only manifest pair with runs over the whole set
    rows = [r for r in rows if split == "all" or fields[r.item].get("split") == split]
    return RunData(run.name, run.config, run.task, rows, run.errors)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("journal", type=Path)
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--split", default="all", choices=["all", "dev", "test"])
    ap.add_argument("--manifest", type=Path, default=ROOT / "data/tools/manifest.jsonl")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # NaN metrics of empty groups
    journal = Journal(args.journal)
    names = args.runs or [n for n in journal.runs() if n.startswith("tools-")]
    fields = conditions(args.manifest)
    runs = [keep(r, journal, fields, args.split) for r in load_runs(journal, names)]
    print(f"split: {args.split}; {len(runs[0].rows)} items per run\n")
    # no latency here: runs come from different sittings (bench/tools_latency.py times them)
    print("| setting | " + " | ".join(HEAD) + " | refused calls |")
    print("|---|" + "---|" * (len(HEAD) + 1))
    for run in runs:
        figures = run.task.metrics(run.rows)
        cis = bootstrap(run.rows, run.task.metrics)
        cells = [fmt(figures[k], cis.get(k)) for k in HEAD]
        refused = sum((r.prediction or "").startswith("error:") for r in run.rows)
        print(f"| {run.name} | " + " | ".join(cells) + f" | {refused} |")
    tools = sorted(k.split(":", 1)[1] for k in runs[0].task.metrics(runs[0].rows)
                   if k.startswith("exact:"))
    print("\nexact per tool (95% CI)\n")
    print("| tool | n | " + " | ".join(r.name for r in runs) + " |")
    print("|---|---|" + "---|" * len(runs))
    for tool in tools:
        n = sum(1 for r in runs[0].rows if f'"name": "{tool}"' in (r.reference or "")
                or (tool == "none" and r.reference == "null"))
        cells = []
        for run in runs:
            figures = run.task.metrics(run.rows)
            ci = bootstrap(run.rows, run.task.metrics, resamples=300).get(f"exact:{tool}")
            cells.append(fmt(figures.get(f"exact:{tool}", float("nan")), ci))
        print(f"| {tool} | {n} | " + " | ".join(cells) + " |")
    print("\nexact by voice and noise\n")
    groups = sorted({(str(f.get("voice")), str(f.get("snr"))) for f in fields.values()})
    print("| voice | SNR | n | " + " | ".join(r.name for r in runs) + " |")
    print("|---|---|---|" + "---|" * len(runs))
    for voice, snr in groups:
        cells, n = [], 0
        for run in runs:
            rows = [r for r in run.rows if (str(fields[r.item].get("voice")),
                                            str(fields[r.item].get("snr"))) == (voice, snr)]
            n = len(rows)
            cells.append(fmt(run.task.metrics(rows)["exact"]) if rows else "-")
        print(f"| {voice} | {snr} | {n} | " + " | ".join(cells) + " |")
    if len(runs) > 1:
        print(f"\npaired differences against {runs[0].name} (95% CI over shared items)\n")
        print("| setting | measure | before | after | difference [95% CI] |")
        print("|---|---|---|---|---|")
        for run in runs[1:]:
            for c in compare(runs[0], run):
                if c.measure in HEAD:
                    print(f"| {run.name} | {c.measure} | {fmt(c.before)} | {fmt(c.after)} | "
                          f"{c.after - c.before:+.3f} [{c.low:+.3f}, {c.high:+.3f}] |")


if __name__ == "__main__":
    main()
