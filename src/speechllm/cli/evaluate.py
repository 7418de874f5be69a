"""Commands that measure: eval (any approach on a dataset) and report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TextColumn

from speechllm import audio as audio_io
from speechllm.cli.common import (
    Post,
    approach_config,
    embedded,
    ensure_models,
    err,
    exits_on_error,
    fail,
    out,
    progress,
)
from speechllm.errors import SpeechLLMError

REGRESSION_EXIT = 6


def _run_name(settings: dict[str, object], task: str, perturb: str | None) -> str:
    """A default run name from what ran: approach, model, post-processing, task, perturbation."""
    kind = str(settings.get("approach", "cascade"))
    if kind == "cascade":
        label = f"{Path(str(settings.get('asr', 'whisper-base'))).name}-" \
                f"{settings.get('postprocess', 'none')}"
    else:
        where = Path(str(settings.get("path", kind)))
        label = where.parent.name if where.name == "final" else where.name
    return f"{kind}-{label}-{task}-{perturb or 'clean'}"


def eval_cmd(
    manifest: Annotated[Path, typer.Argument(help="JSONL manifest of the dataset.")],
    task: Annotated[str, typer.Option(
        help="asr, digit, qa, translate, dialogue or tools.")] = "asr",
    run_name: Annotated[str | None, typer.Option("--run", help="Run name (resumes if it "
                                                 "exists); default from the settings.")] = None,
    journal: Annotated[Path, typer.Option(help="SQLite journal.")] = Path("runs.sqlite"),
    config_file: Annotated[Path | None, typer.Option(
        "--config", help="JSON approach settings, e.g. {\"approach\": \"cascade\", "
                         "\"asr\": \"whisper-tiny.en\"}; replaces --asr/--llm/--post.")] = None,
    asr: Annotated[str, typer.Option(help="ASR model name or path.")] = "whisper-base",
    llm: Annotated[str, typer.Option(help="Chat GGUF name or path.")] = "qwen2.5-0.5b-instruct",
    post: Annotated[Post, typer.Option(help="ASR post-processing.")] = Post.none,
    perturb: Annotated[str | None, typer.Option(help="e.g. noise:snr=10, babble:snr=5, "
                                                     "speed:factor=1.1, reverb:rt60=0.5, "
                                                     "telephone")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N items.")] = None,
    seed: Annotated[int, typer.Option(help="Perturbation seed.")] = 0,
    workers: Annotated[int, typer.Option(help="Parallel workers, each with its own models.")] = 1,
    ray: Annotated[str | None, typer.Option(help="Run on Ray: a cluster address "
                                                  "(ray://host:10001, auto) or 'local'.")] = None,
) -> None:
    """Run any approach on a dataset for a task, journaling every item as it finishes.

    A killed run resumes where it stopped."""
    from speechllm import approach
    from speechllm.data import read_manifest
    from speechllm.eval import runner
    from speechllm.eval.backends import Job, RayActors, Serial, Threads
    from speechllm.eval.journal import Journal
    from speechllm.eval.perturb import parse
    from speechllm.eval.tasks import make_task

    with exits_on_error():
        the_task = make_task(task)
        settings = approach_config(config_file, asr, llm, post, the_task.keep_audio)
        approach.check(settings)
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        items = read_manifest(manifest)[:limit]
        others = []
        if perturb and perturb.startswith("babble"):
            # Babble talkers come from the set itself: up to 64 utterances spread across it.
            step = max(1, len(items) // 64)
            others = [audio_io.load(it.audio) for it in items[::step][:64]]
        perturbation = parse(perturb, others) if perturb else None
        config = {**settings, "task": task, "manifest": str(manifest.resolve()),
                  "perturb": perturb, "seed": seed}
        name = run_name or _run_name(settings, task, perturb)
        ensure_models(embedded(*settings.values()))
        job = Job(approach.Factory.of(settings), the_task, perturbation, seed)
        backend: runner.Backend
        if ray:
            backend = RayActors(None if ray == "local" else ray, workers)
        elif workers > 1:
            backend = Threads(workers)
        else:
            with err.status("loading models"):
                backend = Serial(job.make_lm())
        store = Journal(journal)
        with progress(name, extra=(TextColumn("{task.fields[rate]}"),)) as bar:
            task_id = bar.add_task("eval", total=len(items), rate="")
            start, first = time.perf_counter(), None

            def show(done: int, total: int) -> None:
                nonlocal first
                first = done if first is None else first
                rate = (done - first) / max(1e-9, time.perf_counter() - start)
                bar.update(task_id, completed=done, rate=f"{rate:.2f} items/s")

            summary = runner.run(job, items, store, name, config, backend, show)
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in summary.metrics.items())
    out.print(f"{summary.run}: {summary.items} items, {summary.errors} errors  {metrics}",
              highlight=False)
    for sample in summary.error_samples:
        err.print(f"  [yellow]failed[/] {sample}", highlight=False)


def report(
    runs: Annotated[list[str] | None, typer.Argument(help="Run names, JOURNAL:RUN where "
                    "several journals hold the name (default: every run).")] = None,
    journal: Annotated[list[Path] | None, typer.Option(help="SQLite journal; give it again "
                       "to report runs from several (named JOURNAL:RUN), e.g. two recipe "
                       "runs.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Report folder.")] = Path(
        "report"),
    compare: Annotated[bool, typer.Option(help="Compare two runs (baseline first) and flag "
                                               "regressions; from one journal or two.")] = False,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 1000,
) -> None:
    """Markdown report with PNG plots: metrics with CIs, metric vs SNR, latency, waterfall."""
    from speechllm.eval.journal import Journal
    from speechllm.eval.report import write_report

    journals = journal or [Path("runs.sqlite")]
    for path in journals:
        if not path.is_file():
            raise fail(SpeechLLMError(f"{path}: no such journal (speechllm eval writes one)"))
    try:
        with err.status("writing the report"):
            written = write_report([Journal(j) for j in journals], runs or [], output, compare,
                                   resamples)
    except KeyError as exc:
        raise fail(SpeechLLMError(str(exc.args[0]))) from None
    except (SpeechLLMError, ValueError) as exc:
        raise fail(exc) from None
    out.print(f"wrote {written.path}", highlight=False)
    if written.regressions:
        err.print("[bold red]regression flagged[/] (see the report)")
        raise typer.Exit(REGRESSION_EXIT)
