"""The FSDD baseline as one pivot table (WER with 95% bootstrap CI; rows: model x
post-processing, columns: clean / 10 dB / 0 dB), from the journal bench/fsdd_baseline.sh writes.

    .venv/bin/python bench/baseline_table.py [docs/baseline/runs.sqlite]
"""

from __future__ import annotations

import sys

from speechllm.eval.journal import Journal
from speechllm.eval.report import bootstrap, latencies, load_runs

# Whisper paper (Radford et al. 2022), appendix D.1.1, LibriSpeech test-clean WER (%).
PAPER = {"whisper-base": "5.0", "whisper-tiny.en": "5.6"}
COLUMNS = ["clean", "noise:snr=10", "noise:snr=0"]


def main() -> None:
    journal = Journal(sys.argv[1] if len(sys.argv) > 1 else "docs/baseline/runs.sqlite")
    runs = load_runs(journal, list(journal.runs()))
    cells: dict[tuple[str, str], dict[str, str]] = {}
    speed: dict[tuple[str, str], str] = {}
    for r in runs:
        key = (str(r.config["asr"]), str(r.config.get("postprocess", "none")))
        wer = r.task.metrics(r.rows)["wer"]
        low, high = bootstrap(r.rows, r.task.metrics, 1000)["wer"]
        cells.setdefault(key, {})[r.perturbation] = (
            f"{100 * wer:.1f} [{100 * low:.1f}, {100 * high:.1f}]")
        if r.perturbation == "clean":
            total = latencies(r.rows, "total")
            speed[key] = f"{sorted(total)[len(total) // 2]:.2f}"
    print("| ASR | post-processing | clean | 10 dB | 0 dB | p50 s/item (clean) | "
          "Whisper paper, LibriSpeech test-clean |")
    print("|---|---|---|---|---|---|---|")
    for (asr, post), row in sorted(cells.items()):
        print(f"| {asr} | {post} | " + " | ".join(row.get(c, "-") for c in COLUMNS)
              + f" | {speed.get((asr, post), '-')} | {PAPER.get(asr, '-')} |")


if __name__ == "__main__":
    main()
