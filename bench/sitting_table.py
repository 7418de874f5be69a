"""One sitting of the realtime latency comparison as a table: median time to first audio
(TTFA) per harness, over all questions and over the dev and held-out ones apart, with the
ratio to Pipecat's and its bootstrap 95% interval (questions resampled, runs kept together).

    .venv/bin/python bench/sitting_table.py /tmp/s1      # the OUT of bench/realtime_sitting.sh
Reads every JSON the peer harness wrote there (floor.json, pipecat_*.json,
speechllm_realtime*.json); a question's split is the start of its file name (dev..., held...).
"""

from __future__ import annotations

import json
import random
import statistics
import sys
from pathlib import Path


def turns(path: Path) -> list[tuple[str, float]]:
    """(question, TTFA in ms) for every turn the harness kept."""
    data = json.loads(path.read_text())
    out = []
    for item in data["items"]:
        if item.get("used") is False or item.get("clean") is False:
            continue
        name = Path(item["wav"]).stem
        ms = item["ms"]["ttfa"] if "ms" in item else 1000 * item["ttfa"]
        if ms is not None:
            out.append((name, float(ms)))
    return out


def median_of(rows: list[tuple[str, float]], names: list[str]) -> float:
    return statistics.median(ms for q, ms in rows if q in names)


def ratio_interval(a: list[tuple[str, float]], b: list[tuple[str, float]],
                   names: list[str], draws: int = 2000) -> tuple[float, float]:
    rng = random.Random(0)
    ratios = []
    for _ in range(draws):
        pick = [rng.choice(names) for _ in names]
        ta = [ms for q in pick for n, ms in a if n == q]
        tb = [ms for q in pick for n, ms in b if n == q]
        ratios.append(statistics.median(ta) / statistics.median(tb))
    ratios.sort()
    return ratios[int(0.025 * draws)], ratios[int(0.975 * draws) - 1]


def main() -> None:
    folder = Path(sys.argv[1])
    runs = {p.stem: turns(p) for p in sorted(folder.glob("*.json"))}
    peer = next(k for k in runs if k.startswith("pipecat"))
    names = sorted({q for q, _ in runs[peer]})
    splits = {"all": names, "dev": [n for n in names if n.startswith("dev")],
              "held-out": [n for n in names if n.startswith("held")]}
    print("| harness | turns | TTFA median (ms) | dev | held-out | / Pipecat [95% CI] | "
          "held-out / Pipecat [95% CI] |")
    print("|---|---:|---:|---:|---:|---|---|")
    for name, rows in runs.items():
        cells = [f"{median_of(rows, s):.0f}" if s else "-" for s in splits.values()]
        ratio = held = ""
        if name != peer:
            r = median_of(rows, names) / median_of(runs[peer], names)
            low, high = ratio_interval(rows, runs[peer], names)
            ratio = f"{r:.2f} [{low:.2f}, {high:.2f}]"
            if splits["held-out"]:
                h = median_of(rows, splits["held-out"]) / median_of(runs[peer],
                                                                    splits["held-out"])
                hl, hh = ratio_interval(rows, runs[peer], splits["held-out"])
                held = f"{h:.2f} [{hl:.2f}, {hh:.2f}]"
        print(f"| {name} | {len(rows)} | {' | '.join(cells)} | {ratio} | {held} |")


if __name__ == "__main__":
    main()
