"""Reports from journaled runs: Markdown tables plus PNG plots (matplotlib).

- every metric per run (approach x perturbation), with 95% bootstrap confidence intervals;
- the main metric against SNR, one line per approach (noise and babble runs, clean at the right);
- latency: p50/p90 of ttft, ttfa and total per run, their distributions, and a stage
  waterfall per approach (mean start and length of each stage on one time axis);
- a comparison of two runs on their shared items, flagging significant regressions;
- for tasks without a reference (dialogue), each answer's text and audio for inspection.

Everything is computed from the journal with the task's own `metrics`, so the report and the
run's summary can never disagree.

Long because each section above is a table or a plot of its own; they share the loading,
bootstrap and formatting helpers at the top.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from speechllm._optional import require
from speechllm.eval.journal import Journal, Row
from speechllm.eval.tasks import Task, make_task

LOWER_IS_BETTER = {"wer", "cer"}
T = TypeVar("T")  # what bootstrap resamples: journal rows, or any per-item record
RUN_KEYS = {"task", "manifest", "perturb", "seed", "limit"}  # not part of the approach label
STAGE_COLOURS = {"vad": "#8c8c8c", "asr": "#1f77b4", "postprocess": "#9467bd",
                 "prefill": "#ff7f0e", "decode": "#2ca02c", "tts": "#d62728"}


@dataclass(frozen=True)
class RunData:
    name: str
    config: dict[str, Any]
    task: Task
    rows: list[Row]  # successful items only
    errors: int
    journal: str = ""  # set when the report reads several journals: labels say which

    @property
    def approach(self) -> str:
        """A short label of what ran, from the config minus the run's data settings."""
        c = {k: v for k, v in self.config.items() if k not in RUN_KEYS}
        head = str(c.pop("approach", "cascade"))
        if self.task.name == "asr":
            c.pop("llm", None)  # a transcript-only run never uses the chat LLM
        parts = [str(v) if k in ("asr", "llm") else f"{k}={v}" for k, v in sorted(c.items())
                 if v not in (None, "none", False) and k not in ("tts", "vad")]
        return " ".join([head, *parts, *([f"({self.journal})"] if self.journal else [])])

    @property
    def perturbation(self) -> str:
        return str(self.config.get("perturb") or "clean")

    @property
    def main_metric(self) -> str:
        return next(iter(self.task.metrics(self.rows[:1]))) if self.rows else ""


def load_runs(journal: Journal, names: Sequence[str], tag: str = "") -> list[RunData]:
    runs = []
    for name in names:
        config = journal.config(name)
        rows = journal.rows(name)
        ok = [r for r in rows if r.error is None]
        runs.append(RunData(f"{tag}:{name}" if tag else name, config,
                            make_task(config["task"]), ok, len(rows) - len(ok), tag))
    return runs


def load_runs_from(journals: Sequence[Journal], names: Sequence[str]) -> list[RunData]:
    """Runs from one journal or several (two recipe runs, each with its own journal). With
    several, each run is named `JOURNAL:RUN` and labelled with its journal; a plain name must
    be in exactly one of them. No names: every run of every journal, in order."""
    tags = {str(j.path): j for j in journals}
    if len(journals) == 1:  # plain names (a run's own name may hold a colon)
        (tag, only), = tags.items()
        return load_runs(only, [n.removeprefix(f"{tag}:") for n in names] or list(only.runs()))
    if not names:
        return [r for tag, j in tags.items() for r in load_runs(j, list(j.runs()), tag)]
    runs = []
    for name in names:
        tag, _, run = name.rpartition(":")
        if tag in tags:
            runs += load_runs(tags[tag], [run], tag)
            continue
        holders = [t for t, j in tags.items() if name in j.runs()]
        if len(holders) > 1:
            raise ValueError(f"run {name!r} is in {len(holders)} journals ("
                             f"{', '.join(holders)}); name it as JOURNAL:RUN")
        if not holders:
            known = ", ".join(f"{t}:{r}" for t, j in tags.items() for r in j.runs()) or "none"
            raise KeyError(f"no run {name!r} in {', '.join(tags)} (runs: {known})")
        runs += load_runs(tags[holders[0]], [name], holders[0])
    return runs


def bootstrap(rows: Sequence[T], metrics: Callable[[Sequence[T]], dict[str, float]],
              resamples: int = 1000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of each metric, resampling items with replacement."""
    if len(rows) < 2:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        picked = [rows[i] for i in rng.integers(0, len(rows), len(rows))]
        for k, v in metrics(picked).items():
            draws.setdefault(k, []).append(v)
    return {k: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5)))
            for k, v in draws.items()}


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def latencies(rows: Sequence[Row], key: str) -> np.ndarray:
    return np.array([r.timings[key] for r in rows if r.timings.get(key) is not None], float)


def _snr(perturb: str) -> float | None:
    """The SNR of a noise or babble perturbation ("noise:snr=10" -> 10.0), else None."""
    kind, _, params = perturb.partition(":")
    if kind not in ("noise", "babble"):
        return None
    for part in params.split(","):
        key, _, value = part.partition("=")
        if key.strip() == "snr":
            return float(value)
    return None


# -- plots -------------------------------------------------------------------------------

def _pyplot() -> Any:
    matplotlib = require("matplotlib", "eval")
    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt
    return plt


def plot_snr(runs: Sequence[RunData], path: Path) -> bool:
    """Main metric vs SNR, one line per approach; clean runs are drawn at the right edge."""
    lines: dict[tuple[str, str], list[tuple[float, float, tuple[float, float] | None]]] = {}
    noisy = [r for r in runs if _snr(r.perturbation) is not None]
    if not noisy:
        return False
    snrs = [s for r in noisy if (s := _snr(r.perturbation)) is not None]
    clean_x = max(snrs) + 10
    for r in runs:
        snr = _snr(r.perturbation)
        if snr is None and r.perturbation != "clean":
            continue
        metric = r.main_metric
        value = r.task.metrics(r.rows)[metric]
        ci = bootstrap(r.rows, r.task.metrics, 300).get(metric)
        kinds = [r.perturbation.split(":")[0]] if snr is not None else ["noise", "babble"]
        for kind in kinds:
            lines.setdefault((r.approach, kind), []).append(
                (clean_x if snr is None else snr, value, ci))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for (approach, kind), points in sorted(lines.items()):
        if not any(x != clean_x for x, _, _ in points):
            continue  # a clean run alone is not a line
        points.sort()
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        err = np.array([[y - (c[0] if c else y) for _, y, c in points],
                        [(c[1] if c else y) - y for _, y, c in points]])
        ax.errorbar(xs, ys, yerr=np.clip(err, 0, None), marker="o", capsize=3,
                    label=f"{approach} ({kind})")
    metric = noisy[0].main_metric
    ticks = sorted(set(snrs))
    ax.set_xticks([*ticks, clean_x], [*(f"{t:g}" for t in ticks), "clean"])
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel(metric.upper() if metric in LOWER_IS_BETTER else metric)
    ax.set_title(f"{metric} against noise (95% bootstrap CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_latency(runs: Sequence[RunData], path: Path) -> bool:
    """Box plots of ttft, ttfa and total per run (the whiskers span p10-p90)."""
    keys = [k for k in ("ttft", "ttfa", "total") if any(len(latencies(r.rows, k)) for r in runs)]
    if not keys:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4 + 2.2 * len(keys), 0.6 * len(runs) + 2),
                             dpi=120, squeeze=False)
    labels = [f"{r.approach}\n{r.perturbation}" for r in runs]
    for ax, key in zip(axes[0], keys, strict=True):
        data = [latencies(r.rows, key) for r in runs]
        ax.boxplot([d if len(d) else [np.nan] for d in data], orientation="horizontal",
                   whis=(10, 90), showfliers=False)
        ax.set_yticks(range(1, len(runs) + 1), labels if ax is axes[0][0] else [""] * len(runs),
                      fontsize=7)
        ax.set_xlabel(f"{key} (s)")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("latency per item (box: p25-p75, line: p50, whiskers: p10-p90)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def mean_spans(rows: Sequence[Row]) -> list[tuple[str, float, float]]:
    """(stage, mean start, mean end) over items, first span of each stage, in stage order."""
    acc: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        seen = set()
        for s in r.timings.get("spans", []):
            if s["name"] not in seen:
                seen.add(s["name"])
                acc.setdefault(s["name"], []).append((s["start"], s["end"]))
    out = [(name, float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v])))
           for name, v in acc.items()]
    return sorted(out, key=lambda s: s[1])


def plot_waterfall(runs: Sequence[RunData], path: Path) -> bool:
    """One row per approach (its clean run when it has one): mean stage spans on one axis."""
    chosen: dict[str, RunData] = {}
    for r in runs:
        if r.approach not in chosen or r.perturbation == "clean":
            chosen[r.approach] = r
    rows = [(a, mean_spans(r.rows), r) for a, r in chosen.items() if mean_spans(r.rows)]
    if not rows:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(rows) + 2.0), dpi=120)
    used: set[str] = set()
    for y, (_, spans, r) in enumerate(rows):
        for name, start, end in spans:
            ax.barh(y, end - start, left=start, height=0.5,
                    color=STAGE_COLOURS.get(name, "#17becf"),
                    label=name if name not in used else None)
            used.add(name)
        for key, mark in (("ttft", "|"), ("ttfa", "x")):
            vals = latencies(r.rows, key)
            if len(vals):
                ax.plot([float(np.mean(vals))], [y], marker=mark, color="black", markersize=10,
                        label=f"mean {key}" if f"mean {key}" not in used else None)
                used.add(f"mean {key}")
    ax.set_yticks(range(len(rows)), [a for a, _, _ in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds after the end of the user's speech (means over items)")
    ax.set_title("stage waterfall per approach")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, ncol=8, loc="upper center", bbox_to_anchor=(0.5, -0.35 - 0.1 / len(rows)),
              frameon=False)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return True


# -- comparison --------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    measure: str
    before: float
    after: float
    low: float  # 95% CI of (after - before), paired over shared items
    high: float
    regression: bool
    improvement: bool


def compare(base: RunData, new: RunData, resamples: int = 1000, seed: int = 0,
            latency_tolerance: float = 0.10) -> list[Change]:
    """Paired bootstrap over the items both runs finished. A metric regresses when its CI
    lies wholly on the bad side of zero; a latency regresses when its median grows by more
    than `latency_tolerance` and the CI of the growth excludes zero."""
    shared = sorted({r.item for r in base.rows} & {r.item for r in new.rows})
    if len(shared) < 2:
        raise ValueError(f"{base.name} and {new.name} share {len(shared)} finished items; "
                         "a comparison needs at least 2")
    a = {r.item: r for r in base.rows}
    b = {r.item: r for r in new.rows}
    ra, rb = [a[k] for k in shared], [b[k] for k in shared]
    rng = np.random.default_rng(seed)
    picks = [rng.integers(0, len(shared), len(shared)) for _ in range(resamples)]
    changes = []
    before, after = base.task.metrics(ra), new.task.metrics(rb)
    for metric in before:
        if metric not in after:
            continue
        deltas = [new.task.metrics([rb[i] for i in p])[metric]
                  - base.task.metrics([ra[i] for i in p])[metric] for p in picks]
        low, high = np.nanpercentile(deltas, [2.5, 97.5])
        worse_up = metric in LOWER_IS_BETTER
        changes.append(Change(metric, before[metric], after[metric], float(low), float(high),
                              bool(low > 0 if worse_up else high < 0),
                              bool(high < 0 if worse_up else low > 0)))
    for key in ("ttft", "ttfa", "total"):
        pairs = [(x.timings.get(key), y.timings.get(key)) for x, y in zip(ra, rb, strict=True)]
        pa = np.array([p for p, q in pairs if p is not None and q is not None], float)
        pb = np.array([q for p, q in pairs if p is not None and q is not None], float)
        if len(pa) < 2:
            continue
        meds = [float(np.median(pb[p % len(pa)]) - np.median(pa[p % len(pa)])) for p in picks]
        low, high = np.percentile(meds, [2.5, 97.5])
        m0, m1 = float(np.median(pa)), float(np.median(pb))
        changes.append(Change(f"{key} p50 (s)", m0, m1, float(low), float(high),
                              bool(low > 0 and m1 > m0 * (1 + latency_tolerance)),
                              bool(high < 0 and m1 < m0 * (1 - latency_tolerance))))
    return changes


# -- the report --------------------------------------------------------------------------

def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


@dataclass(frozen=True)
class Report:
    path: Path  # report.md
    regressions: tuple[str, ...] = ()  # measures the candidate run is significantly worse on


def write_report(journal: Journal | Sequence[Journal], names: Sequence[str],
                 out_dir: str | os.PathLike[str], compare_runs: bool = False,
                 resamples: int = 1000) -> Report:
    """Write `report.md` and its PNGs into `out_dir`. `journal` may be several journals
    (see `load_runs_from`)."""
    journals = [journal] if isinstance(journal, Journal) else list(journal)
    runs = load_runs_from(journals, names)
    if not runs:
        raise ValueError(f"{', '.join(str(j.path) for j in journals)}: no runs")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    where = ", ".join(f"`{j.path}`" for j in journals)
    md = ["# speechllm evaluation report", "",
          f"Journal{'s' if len(journals) > 1 else ''}: {where}. "
          f"Runs: {', '.join(f'`{r.name}`' for r in runs)}.", ""]

    md += ["## Metrics", "", "Intervals are 95% percentile bootstrap over items "
           f"({resamples} resamples). WER is corpus-level (errors / reference words).", ""]
    by_task: dict[str, list[RunData]] = {}
    for r in runs:
        by_task.setdefault(r.task.name, []).append(r)
    for task_name, group in by_task.items():
        metric_names = list(group[0].task.metrics(group[0].rows[:1])) if group[0].rows else []
        table = []
        for r in group:
            values = r.task.metrics(r.rows) if r.rows else {}
            cis = bootstrap(r.rows, r.task.metrics, resamples)
            cells = []
            for m in metric_names:
                v = values.get(m, float("nan"))
                ci = cis.get(m)
                cells.append(_fmt(v) + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""))
            table.append([r.approach, r.perturbation, str(len(r.rows)), str(r.errors), *cells])
        md += [f"### Task `{task_name}`", ""]
        md += _table(["approach", "perturbation", "items", "errors", *metric_names], table)
        md.append("")

    if plot_snr(runs, out / "snr.png"):
        md += ["## Robustness to noise", "", "![metric against SNR](snr.png)", ""]

    md += ["## Latency", "", "Seconds from the end of the user's speech (one clock for every "
           "approach): ttft to the first text token, ttfa to the first audio sample.", ""]
    lat_rows = []
    for r in runs:
        cells = []
        for key in ("ttft", "ttfa", "total"):
            lat = latencies(r.rows, key)
            cells += ([_fmt(float(np.percentile(lat, 50))), _fmt(float(np.percentile(lat, 90)))]
                      if len(lat) else ["-", "-"])
        rtf = latencies(r.rows, "rtf")
        cells.append(_fmt(float(np.mean(rtf))) if len(rtf) else "-")
        lat_rows.append([r.approach, r.perturbation, *cells])
    md += _table(["approach", "perturbation", "ttft p50", "ttft p90", "ttfa p50", "ttfa p90",
                  "total p50", "total p90", "mean RTF"], lat_rows)
    md.append("")
    if plot_latency(runs, out / "latency.png"):
        md += ["![latency distributions](latency.png)", ""]
    if plot_waterfall(runs, out / "waterfall.png"):
        md += ["![stage waterfall](waterfall.png)", ""]

    if compare_runs:
        if len(runs) != 2:
            raise ValueError(f"--compare takes exactly two runs (baseline, candidate), "
                             f"got {len(runs)}")
        changes = compare(runs[0], runs[1], resamples)
        flagged = [c for c in changes if c.regression]
        md += [f"## Comparison: `{runs[1].name}` against `{runs[0].name}`", "",
               ("**REGRESSION** in " + ", ".join(c.measure for c in flagged)) if flagged
               else "No significant regression.", "",
               "Paired bootstrap over the items both runs finished; delta = candidate - "
               "baseline, with its 95% interval.", ""]
        md += _table(["measure", "baseline", "candidate", "delta [95% CI]", "verdict"],
                     [[c.measure, _fmt(c.before), _fmt(c.after),
                       f"{_fmt(c.after - c.before)} [{_fmt(c.low)}, {_fmt(c.high)}]",
                       "REGRESSION" if c.regression else "better" if c.improvement
                       else "no significant change"] for c in changes])
        md += ["", *_flips(runs[0], runs[1]), ""]

    for r in runs:
        if r.task.keep_audio and r.rows:
            md += [f"## Answers of `{r.name}`", ""]
            md += _table(["item", "user said", "answer", "audio"],
                         [[x.item, x.reference or "", x.prediction or "",
                           f"[wav]({os.path.relpath(x.audio, out)})" if x.audio else ""]
                          for x in r.rows])
            md.append("")
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return Report(path, tuple(c.measure for c in flagged) if compare_runs else ())


def _flips(base: RunData, new: RunData, limit: int = 10) -> list[str]:
    """Items whose prediction changed, with the reference, to see what a change did."""
    a = {r.item: r for r in base.rows}
    changed = [(a[r.item], r) for r in new.rows if r.item in a
               and (a[r.item].prediction or "") != (r.prediction or "")]
    if not changed:
        return ["No prediction changed."]
    lines = [f"{len(changed)} predictions changed; the first {min(limit, len(changed))}:", ""]
    lines += _table(["item", "reference", base.name, new.name],
                    [[x.item, x.reference or "", x.prediction or "", y.prediction or ""]
                     for x, y in changed[:limit]])
    return lines
