"""The `speechllm` command."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from speechllm import audio as audio_io
from speechllm import errors, models
from speechllm._optional import require
from speechllm.errors import ModelError, SpeechLLMError
from speechllm.speechlm import Request, Response, SpeechLM

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Speech + LLMs, offline on a CPU. Exit codes: 0 ok, 1 unexpected, "
                       "2 usage, 3 unusable input, 4 model problem, 5 missing dependency, "
                       "6 regression flagged by report --compare.")
out = Console(soft_wrap=True)  # no hard line breaks: scripts and tests grep this
err = Console(stderr=True, soft_wrap=True)


class Task(StrEnum):
    transcribe = "transcribe"
    to_english = "translate"  # not `translate`: that name is str.translate


class Post(StrEnum):
    none = "none"
    rescore = "rescore"
    correct = "correct"


class TTSName(StrEnum):
    piper = "piper"
    espeak = "espeak"
    none = "none"


def _fail(exc: SpeechLLMError | ValueError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
    return typer.Exit(exc.exit_code if isinstance(exc, SpeechLLMError) else 3)


def _ensure_models(names: list[str]) -> None:
    """Assemble what is missing, with a progress bar (only the first run does any work)."""
    todo = [r.name for r in models.status(names, check=False) if r.status == "not assembled"]
    if not todo:
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        for name in todo:
            task = bar.add_task(f"assembling {name}", total=None)

            def show(done: int, total: int, task: TaskID = task) -> None:
                bar.update(task, completed=done, total=total)

            models.ensure(name, show)


@app.command("models")
def models_cmd(
    assemble: Annotated[bool, typer.Option(help="Assemble and verify every model now.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the embedded models with status, size and path."""
    try:
        if assemble:
            _ensure_models(list(models.REGISTRY))
        rows = models.status()
    except SpeechLLMError as exc:
        raise _fail(exc) from None
    if as_json:
        out.print_json(json.dumps([
            {**dataclasses.asdict(r), "path": str(r.path) if r.path else None} for r in rows]))
    else:
        table = Table(title=f"embedded models (cache: {models.cache_dir()})")
        for col in ("name", "role", "status", "size", "path"):
            table.add_column(col, overflow="fold")
        for r in rows:
            colour = "green" if r.status == "ready" else "yellow"
            size = f"{r.size / 1e6:.0f} MB" if r.size else "-"
            table.add_row(r.name, r.role, f"[{colour}]{r.status}[/]", size, str(r.path or "-"))
        out.print(table)
    if any(r.status == "damaged" for r in rows):
        raise typer.Exit(4)


@app.command()
def transcribe(
    files: Annotated[list[Path], typer.Argument(help="Audio files (wav, flac, ogg, mp3).")],
    model: Annotated[str, typer.Option(help="whisper-base, whisper-tiny.en, or a CTranslate2 "
                                            "Whisper directory.")] = "whisper-base",
    task: Annotated[Task, typer.Option(help="translate: any language -> English.")] = (
        Task.transcribe),
    language: Annotated[str | None, typer.Option(help="Language code; default detects.")] = None,
    beam: Annotated[int, typer.Option(help="Beam size.")] = 5,
    nbest: Annotated[int, typer.Option(help="Also list the N best hypotheses.")] = 0,
    words: Annotated[bool, typer.Option("--words", help="Word timestamps.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines, one per file.")] = False,
) -> None:
    """Transcribe (or translate into English) audio files with Whisper."""
    from speechllm.asr.base import ASROptions
    from speechllm.asr.faster_whisper import FasterWhisperASR

    try:
        options = ASROptions(task=task.value, language=language, beam_size=beam,
                             word_timestamps=words)
        if model in models.REGISTRY:
            _ensure_models([model])
        with err.status(f"loading {model}"):
            asr = FasterWhisperASR(model)
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None
    failed = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=len(files) < 2) as bar:
        job = bar.add_task("transcribing", total=len(files))
        for path in files:
            try:
                audio = audio_io.load(path)
                result = asr.transcribe(audio, options)
                hyps = asr.nbest(audio, nbest, options) if nbest else []
            except (SpeechLLMError, ValueError) as exc:
                failed += 1
                err.print(f"[bold red]error:[/] {exc}", highlight=False)
                bar.advance(job)
                continue
            if as_json:
                record = {"file": str(path), "text": result.text, "language": result.language,
                          "language_probability": result.language_probability,
                          "duration": result.duration,
                          "segments": [dataclasses.asdict(s) for s in result.segments]}
                if nbest:
                    record["nbest"] = [dataclasses.asdict(h) for h in hyps]
                print(json.dumps(record), flush=True)  # JSON Lines: one object per file
            else:
                out.print(f"[bold]{path}[/] ({result.language}): {result.text}", highlight=False)
                for s in result.segments if words else ():
                    for w in s.words:
                        out.print(f"  {w.start:6.2f}-{w.end:6.2f}  {w.text}", highlight=False)
                for i, h in enumerate(hyps, 1):
                    out.print(f"  {i}. {h.score:7.3f}  {h.text}", highlight=False)
            bar.advance(job)
    if failed:
        raise typer.Exit(3)


@app.command()
def speak(
    text: Annotated[str, typer.Argument(help="What to say.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Audio file to write.")],
    tts: Annotated[TTSName, typer.Option(help="TTS backend.")] = TTSName.piper,
    voice: Annotated[str | None, typer.Option(help="Piper voice (.onnx path) or espeak "
                                                   "voice name.")] = None,
) -> None:
    """Synthesise TEXT to an audio file."""
    from speechllm.tts.base import make_tts, synthesize

    if not text.strip():
        raise _fail(ValueError("nothing to say: TEXT is empty"))
    if tts is TTSName.none:
        raise _fail(ValueError("speak needs a TTS backend: piper or espeak"))
    try:
        speech = synthesize(make_tts(tts.value, voice), text)
        audio_io.save(speech, output)
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None
    err.print(f"wrote {output} ({speech.duration:.2f} s)")


@app.command()
def chat(
    files: Annotated[list[Path], typer.Argument(help="Spoken turns, in order (one conversation).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Reply audio; with several "
                                                "turns, -1, -2, ... are added.")] = None,
    asr: Annotated[str, typer.Option(help="ASR model name or path.")] = "whisper-base",
    llm: Annotated[str, typer.Option(help="Chat GGUF name/path, or the server's model name "
                                          "with --llm-url.")] = "qwen2.5-0.5b-instruct",
    llm_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server, e.g. "
                                                     "http://127.0.0.1:8000/v1")] = None,
    tts: Annotated[TTSName, typer.Option(help="TTS backend.")] = TTSName.piper,
    voice: Annotated[str | None, typer.Option(help="TTS voice.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    post: Annotated[Post, typer.Option(help="ASR post-processing.")] = Post.none,
    stream: Annotated[bool, typer.Option(help="Speak each clause as soon as it is "
                                              "written.")] = True,
    max_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 256,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Ask spoken questions; print the transcript, the answer and a timing waterfall."""
    from speechllm.cascade.build import CascadeSpec, build_cascade
    from speechllm.cascade.pipeline import CascadeConfig
    from speechllm.speechlm import Message, Request
    from speechllm.waterfall import waterfall

    try:
        turns = [audio_io.load(f) for f in files]  # fail on bad input before loading models
        spec = CascadeSpec(asr=asr, llm=llm, llm_url=llm_url,
                           tts=None if tts is TTSName.none else tts.value, voice=voice,
                           postprocess=post.value)
        wanted = [n for n in (asr, None if llm_url else llm) if n in models.REGISTRY]
        if post is Post.rescore:
            wanted.append(spec.scorer)
        _ensure_models(wanted)
        with err.status("loading models"):
            lm = build_cascade(spec, CascadeConfig(stream_tts=stream))
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None
    history: tuple[Message, ...] = ()
    for i, (path, speech) in enumerate(zip(files, turns, strict=True), 1):
        request = Request(audio=speech, system=system, history=history,
                          want_audio=tts is not TTSName.none and output is not None,
                          max_tokens=max_tokens)
        try:
            response = asyncio.run(_stream_turn(lm, request, live=not as_json))
        except (SpeechLLMError, ValueError) as exc:
            raise _fail(exc) from None
        history = response.history
        target = None
        if output is not None and response.audio is not None:
            target = output if len(files) == 1 else output.with_stem(f"{output.stem}-{i}")
            audio_io.save(response.audio, target)
        if as_json:
            t = response.timings
            print(json.dumps({
                "file": str(path), "transcript": response.transcript, "answer": response.text,
                "audio": str(target) if target else None, "ttft": t.ttft, "ttfa": t.ttfa,
                "total": t.total, "spans": [dataclasses.asdict(s) for s in t.spans]}))
        else:
            for line in waterfall(response.timings):
                out.print(f"  {line}", highlight=False)
            if target and response.audio is not None:
                out.print(f"  [dim]reply audio: {target} ({response.audio.duration:.1f} s)[/]")


@app.command()
def synth(
    texts: Annotated[Path, typer.Argument(help="Texts: one per line, or JSONL with \"text\" "
                                                "and task fields.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Dataset folder.")],
    voices: Annotated[str, typer.Option(help="Comma-separated backend[:voice].")] = (
        "piper,espeak:en-us,espeak:en-gb+f3"),
    rates: Annotated[str, typer.Option(help="Comma-separated speed factors.")] = "1.0",
    snr: Annotated[str, typer.Option(help="Comma-separated SNRs in dB; 'clean' for none.")] = (
        "clean"),
    effects: Annotated[str, typer.Option(help="Comma-separated 'clean' or perturbations "
                                               "without commas (telephone, reverb:rt60=0.4, "
                                               "speed:factor=0.9).")] = "clean",
    seed: Annotated[int, typer.Option(help="Noise seed.")] = 0,
    workers: Annotated[int | None, typer.Option(help="Processes rendering clips (default: one "
                                                     "per core).", min=1)] = None,
) -> None:
    """Synthesise a speech dataset (WAVs + manifest.jsonl) from text with the local voices.

    One clip for every text x voice x rate x SNR x effect."""
    from speechllm.eval.synth import SynthSpec, read_texts, synthesize_dataset

    try:
        spec = SynthSpec(
            voices=tuple(v.strip() for v in voices.split(",") if v.strip()),
            rates=tuple(float(r) for r in rates.split(",")),
            snrs=tuple(None if x.strip() == "clean" else float(x) for x in snr.split(",")),
            effects=tuple(None if x.strip() == "clean" else x.strip()
                          for x in effects.split(",")),
            seed=seed,
        )
        rows = read_texts(texts)
        with Progress(TextColumn("synthesising"), BarColumn(), TextColumn("{task.completed}/"
                      "{task.total}"), TimeRemainingColumn(), console=err) as bar:
            job = bar.add_task("synth", total=None)
            manifest = synthesize_dataset(
                rows, output, spec, lambda done, total: bar.update(job, completed=done,
                                                                   total=total), workers)
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None
    count = sum(1 for _ in manifest.open())
    out.print(f"wrote {count} utterances: {manifest}", highlight=False)


@app.command("import")
def import_cmd(
    source: Annotated[Path, typer.Argument(help="A folder of audio with .txt transcripts, a "
                                                ".csv/.tsv table, or a Hugging Face dataset "
                                                "folder saved with save_to_disk.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Manifest to write (.jsonl); "
                                         "a dataset's audio goes in clips/ beside it.")],
    split: Annotated[str | None, typer.Option(help="Split of a saved DatasetDict.")] = None,
    audio_column: Annotated[str, typer.Option(help="Audio column (tables, datasets).")] = (
        "audio"),
    text_column: Annotated[str, typer.Option(help="Transcript column.")] = "text",
) -> None:
    """Turn a folder, a CSV/TSV or a saved Hugging Face dataset into a JSONL manifest."""
    from speechllm.eval import manifest as mf

    try:
        saved = ("dataset_dict.json", "dataset_info.json")
        if source.is_dir() and any((source / name).is_file() for name in saved):
            with err.status("reading the dataset"):
                items = mf.from_hf_disk(source, output.parent, split, audio_column, text_column)
        elif source.suffix.lower() in (".csv", ".tsv"):
            items = mf.from_table(source, audio_column, text_column)
        else:
            items = mf.from_folder(source)
        mf.write_manifest(items, output)
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None
    out.print(f"wrote {len(items)} items: {output}", highlight=False)


def _approach_config(config_file: Path | None, asr: str, llm: str, post: Post,
                     speak: bool) -> dict[str, object]:
    if config_file is None:  # TTS only loads for tasks that keep spoken answers
        return {"approach": "cascade", "asr": asr, "llm": llm, "postprocess": post.value,
                "tts": "piper" if speak else None}
    try:
        loaded = json.loads(config_file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpeechLLMError(f"{config_file}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise SpeechLLMError(f"{config_file}: not valid JSON ({exc.msg}, line {exc.lineno})"
                             ) from None
    if not isinstance(loaded, dict):
        raise SpeechLLMError(f"{config_file}: expected a JSON object of approach settings")
    return loaded


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


@app.command("eval")
def eval_cmd(
    manifest: Annotated[Path, typer.Argument(help="JSONL manifest of the dataset.")],
    task: Annotated[str, typer.Option(help="asr, digit, qa, translate or dialogue.")] = "asr",
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
    from speechllm.eval import runner
    from speechllm.eval.backends import Job, RayActors, Serial, Threads
    from speechllm.eval.journal import Journal
    from speechllm.eval.manifest import read_manifest
    from speechllm.eval.perturb import parse
    from speechllm.eval.tasks import make_task

    try:
        the_task = make_task(task)
        settings = _approach_config(config_file, asr, llm, post, the_task.keep_audio)
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
        _ensure_models([str(v) for v in settings.values() if str(v) in models.REGISTRY])
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
        with Progress(TextColumn(name), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                      console=err) as bar:
            progress = bar.add_task("eval", total=len(items), rate="")
            start, first = time.perf_counter(), None

            def show(done: int, total: int) -> None:
                nonlocal first
                first = done if first is None else first
                rate = (done - first) / max(1e-9, time.perf_counter() - start)
                bar.update(progress, completed=done, rate=f"{rate:.2f} items/s")

            summary = runner.run(job, items, store, name, config, backend, show)
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in summary.metrics.items())
    out.print(f"{summary.run}: {summary.items} items, {summary.errors} errors  {metrics}",
              highlight=False)
    for sample in summary.error_samples:
        err.print(f"  [yellow]failed[/] {sample}", highlight=False)


@app.command()
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
            raise _fail(SpeechLLMError(f"{path}: no such journal (speechllm eval writes one)"))
    try:
        with err.status("writing the report"):
            path = write_report([Journal(j) for j in journals], runs or [], output, compare,
                                resamples)
    except KeyError as exc:
        raise _fail(SpeechLLMError(str(exc.args[0]))) from None
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None
    out.print(f"wrote {path}", highlight=False)
    if compare and "**REGRESSION**" in path.read_text(encoding="utf-8"):
        err.print("[bold red]regression flagged[/] (see the report)")
        raise typer.Exit(6)


train_app = typer.Typer(no_args_is_help=True, help="Train models.")
app.add_typer(train_app, name="train")


@train_app.command("latent")
def train_latent(
    config: Annotated[Path, typer.Argument(help="JSON training config (model, data, train).")],
) -> None:
    """Train a speech LLM (latent adapter, or token LM) from a JSON config.

    Resumes from the output folder's latest checkpoint. Several processes: torchrun
    --nproc_per_node N -m speechllm.cli train latent CONFIG (or accelerate launch with a
    multi-process config)."""
    from speechllm.latent.train import load_config, train

    try:
        settings = load_config(config)  # every field checked before any model loads
        _ensure_models([n for n in (getattr(settings.model, "encoder", ""), settings.model.llm)
                        if n in models.REGISTRY])
        main_process = os.environ.get("RANK", "0") == "0"  # torchrun / accelerate launch
        with Progress(TextColumn("training"), BarColumn(), TextColumn("step {task.completed}/"
                      "{task.total}"), TextColumn("{task.fields[loss]}"),
                      TimeRemainingColumn(), console=err, disable=not main_process) as bar:
            job = bar.add_task("train", total=settings.train.steps, loss="loss -")
            result = train(settings, _step_report(bar, job, settings.train.log_every,
                                                  main_process))
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None
    if not main_process:
        return
    out.print(f"saved {result.output} after {result.steps} steps on {result.processes} "
              f"process(es) (final loss "
              f"{result.final_loss:.4f}; {result.seconds_per_step:.2f} s/step"
              f"{'; bf16 products' if result.precision == 'bf16' else ''}; peak RSS "
              f"{result.peak_rss_mb:.0f} MB); loss curve {result.loss_curve}", highlight=False,
              soft_wrap=True)  # one line: scripts read it


def _step_report(bar: Progress, job: TaskID, every: int, log: bool = True
                 ) -> Callable[[int, int, float], None]:
    """A training loop's progress callback: the live bar, and on a log file (where rich
    draws nothing until the end) a line every `every` steps and at the last."""

    def report(step: int, total: int, loss: float) -> None:
        bar.update(job, completed=step, loss=f"loss {loss:.4f}")
        if log and not err.is_terminal and (step % every == 0 or step == total):
            err.print(f"step {step}/{total} loss {loss:.4f}", highlight=False)

    return report


tokens_app = typer.Typer(no_args_is_help=True, help="Discrete audio tokens.")
app.add_typer(tokens_app, name="tokens")


class TokenKind(StrEnum):
    units = "units"
    rvq = "rvq"


@tokens_app.command("fit")
def tokens_fit(
    manifests: Annotated[list[Path], typer.Argument(
        help="JSONL manifest(s) of the audio to fit on, fitted on together.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Tokenizer folder.")],
    kind: Annotated[TokenKind, typer.Option(help="units: k-means over Whisper encoder "
                    "states (semantic); rvq: residual VQ of log-mel frames (acoustic).")] = (
        TokenKind.units),
    k: Annotated[int, typer.Option("-k", help="Codes per codebook.")] = 200,
    stages: Annotated[int, typer.Option(help="RVQ codebooks (rvq only).")] = 8,
    encoder: Annotated[str, typer.Option(help="Whisper encoder (units only).")] = "whisper-base",
    window: Annotated[float, typer.Option(help="Encoder window in seconds (units only; "
                      "shorter is faster, longer audio is cut into windows).")] = 10.0,
    fitted_windows: Annotated[bool, typer.Option(help="Pad each clip to the shortest of "
                              "the window, half of it, a quarter, ... that holds it (units "
                              "only): short clips encode faster, with other states than a "
                              "fixed window.")] = False,
    shortest_window: Annotated[float, typer.Option(help="The shortest fitted window in "
                               "seconds (units only; 1 s windows lost digit accuracy).")] = 2.0,
    rate: Annotated[float, typer.Option(help="Units per second (units only): 50 keeps every "
                    "Whisper encoder state, 25 pools two, 12.5 four.")] = 25.0,
    seed: Annotated[int, typer.Option(help="k-means seed.")] = 0,
) -> None:
    """Fit a tokenizer on the audio of one or more manifests and save it."""
    from speechllm.audio import load
    from speechllm.eval.manifest import read_manifest
    from speechllm.tokens.semantic import STATE_RATE

    # the encoder gives 50 states/s, so a rate is a whole number of states pooled per unit
    stride = round(STATE_RATE / rate) if rate > 0 else 0
    if stride < 1 or abs(STATE_RATE / stride - rate) > 0.01 * rate:
        raise _fail(ValueError(f"--rate {rate:g}: units are {STATE_RATE} Whisper encoder "
                               f"states/s pooled a whole number at a time (50, 25, 16.67, "
                               "12.5, ...)"))
    try:
        items = [item for manifest in manifests for item in read_manifest(manifest)]
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err, transient=True) as bar:
            job = bar.add_task("reading audio", total=len(items))
            audios = []
            for item in items:
                audios.append(load(item.audio))
                bar.advance(job)
            bar.update(job, description="features", completed=0)

            def show(done: int, total: int) -> None:
                bar.update(job, completed=done, total=total)

            if kind == TokenKind.units:
                from speechllm.tokens.semantic import KMeansUnits, UnitsConfig
                from speechllm.tokens.unit_cache import UnitCache, file_stamp
                tok: Any
                tok, fitted = KMeansUnits.fit_and_encode(
                    audios, UnitsConfig(encoder=encoder, k=k, stride=stride,
                                        window_seconds=window,
                                        fitted_windows=fitted_windows,
                                        shortest_window=shortest_window), seed, show)
                # the clips' units, for the decoder and the token LM trained on these units
                UnitCache(tok).put({file_stamp(item.audio): u
                                    for item, u in zip(items, fitted, strict=True)})
            else:
                from speechllm.tokens.acoustic import MelRVQ, RVQConfig
                tok = MelRVQ.fit(audios, RVQConfig(stages=stages, k=k), seed, show)
        tok.save(output)
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None
    seconds = sum(a.duration for a in audios)
    out.print(f"fitted {tok.info.name} on {len(audios)} files ({seconds:.0f} s): "
              f"{tok.info.bitrate:.0f} bit/s; saved {output}", highlight=False)


@tokens_app.command("train-u2s")
def tokens_train_u2s(
    manifests: Annotated[list[Path], typer.Argument(
        help="JSONL manifest(s) of one voice's speech, trained on together.")],
    units: Annotated[Path, typer.Option(help="A unit tokenizer folder (tokens fit --kind "
                     "units).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Unit-to-speech folder.")],
    steps: Annotated[int, typer.Option(help="Training steps.")] = 1500,
    batch_size: Annotated[int, typer.Option(help="Clips per training step.", min=1)] = 16,
    centroid_inputs: Annotated[bool, typer.Option(
        help="Also feed each unit's k-means centroid, so units that sound alike start alike."
    )] = False,
    max_dilation: Annotated[int, typer.Option(
        help="Largest dilation of the network's blocks (a power of two): how much context "
             "each frame sees (8: +-1.5 s, 1: +-0.4 s).")] = 8,
    dropout: Annotated[float, typer.Option(
        help="Dropout on each block's output while training, so the network does not "
             "memorise its clips' exact unit sequences.")] = 0.2,
    channels: Annotated[int, typer.Option(
        help="Width of the network's blocks: its compute grows with the square.")] = 256,
    autocast: Annotated[str, typer.Option(
        help="bfloat16 products while training: auto (where the CPU has them in hardware: "
             "AVX-512 BF16 or AMX), bf16 or off.")] = "off",
    lm: Annotated[Path | None, typer.Option(
        help="A token model (same units) whose teacher-forced predictions half the examples "
             "read instead of the clip's units, so the decoder renders its near misses. The "
             "manifests need word timings if it was trained with interleave_words.")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Train a unit-to-speech decoder (units -> log-mel -> Griffin-Lim) on a voice."""
    from speechllm.audio import load
    from speechllm.eval.manifest import read_manifest
    from speechllm.tokens.semantic import KMeansUnits
    from speechllm.tokens.unit2speech import U2SConfig, UnitToSpeech
    from speechllm.tokens.unit_cache import encode_files

    try:
        tok = KMeansUnits.load(units)
        items = [item for m in manifests for item in read_manifest(m)]
        audios = [load(item.audio) for item in items]
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[loss]}"), TimeRemainingColumn(),
                      console=err) as bar:
            forced = None if lm is None else _TeacherForced(lm, tok, items, bar)
            units_job = bar.add_task("units", total=len(items), loss="")
            codes = encode_files(tok, [item.audio for item in items], progress=lambda d, t:
                                 bar.update(units_job, completed=d, total=t),
                                 audio=audios.__getitem__)  # loaded above for the mel
            bar.update(units_job, completed=len(items))
            job = bar.add_task("training", total=steps, loss="loss -")
            u2s = UnitToSpeech.train(audios, tok, U2SConfig.for_units(
                tok, steps=steps, batch_size=batch_size, centroid_inputs=centroid_inputs,
                max_dilation=max_dilation, dropout=dropout, channels=channels,
                autocast=autocast), seed,
                                     _step_report(bar, job, 50), forced, codes)
        u2s.save(output)
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None
    if forced is not None:
        out.print(f"the token model's teacher-forced units equal the clips' on "
                  f"{forced.agreement():.1%} of frames", highlight=False)
    out.print(f"trained unit-to-speech on {len(audios)} files for {steps} steps; saved "
              f"{output}", highlight=False)


class _TeacherForced:
    """`alternates` for UnitToSpeech.train: a token model's prediction at each unit."""

    def __init__(self, model: Path, units: Any, items: list[Any], bar: Progress) -> None:
        from speechllm.tokens.model import SpeakTarget, TokenSpeechLM

        self.lm = TokenSpeechLM.from_pretrained(model)
        if self.lm.units.config.k != units.config.k or \
                not (self.lm.units.centroids == units.centroids).all():
            raise ModelError(f"{model} writes other units than --units")
        self.targets = [SpeakTarget.from_item(item) for item in items]
        self.bar, self.job = bar, bar.add_task("teacher forcing", total=len(items), loss="")
        self.same = self.total = 0

    def __call__(self, n: int, clip: Any) -> list[int]:
        predicted: list[int] = self.lm.teacher_forced_units(self.targets[n], clip.tolist())
        self.same += sum(int(a == b) for a, b in zip(predicted, clip.tolist(), strict=True))
        self.total += len(predicted)
        self.bar.advance(self.job)
        return predicted

    def agreement(self) -> float:
        return self.same / max(1, self.total)


@tokens_app.command("train-vocoder")
def tokens_train_vocoder(
    manifest: Annotated[Path, typer.Argument(help="JSONL manifest of the speech to learn "
                                             "from (one voice is best).")],
    tokenizer: Annotated[Path, typer.Option(help="A mel RVQ or unit-to-speech folder: the "
                         "vocoder is saved in its vocoder/ and decodes for it from then on.")],
    steps: Annotated[int, typer.Option(help="Training steps.")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Train the small neural vocoder (log-mel -> waveform) for a tokenizer's mel frames."""
    from speechllm.audio import load
    from speechllm.eval.manifest import read_manifest
    from speechllm.tokens.load import load_tokenizer

    try:
        tok = load_tokenizer(tokenizer)
        if not hasattr(tok, "vocoder"):
            raise SpeechLLMError(f"{tokenizer}: {tok.info.name} does not decode through "
                                 "log-mel frames; give a mel RVQ or unit-to-speech folder")
        from speechllm.tokens.unit2speech import MEL
        from speechllm.tokens.vocoder import MelVocoder, VocoderConfig

        mel = tok.config.mel if hasattr(tok.config, "mel") else MEL
        audios = [load(item.audio) for item in read_manifest(manifest)]
        with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[loss]}"), TimeRemainingColumn(),
                      console=err) as bar:
            job = bar.add_task("train", total=steps, loss="loss -")
            vocoder = MelVocoder.train(audios, VocoderConfig(mel=mel, steps=steps), seed,
                                       _step_report(bar, job, 50))
        vocoder.save(tokenizer / "vocoder")
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None
    out.print(f"trained a vocoder on {len(audios)} files for {steps} steps; saved "
              f"{tokenizer / 'vocoder'}", highlight=False)


@tokens_app.command("encode")
def tokens_encode(
    tokenizer: Annotated[Path, typer.Argument(help="Tokenizer or codec folder.")],
    audio: Annotated[list[Path], typer.Argument(help="Audio files.")],
    dedup_units: Annotated[bool, typer.Option("--dedup", help="Collapse repeated units "
                           "(single-codebook tokenizers).")] = False,
) -> None:
    """Print each file's codes as JSON Lines: {"audio", "tokenizer", "codes": [[...], ...]}."""
    from speechllm.audio import load
    from speechllm.tokens.base import dedup
    from speechllm.tokens.load import load_tokenizer

    try:
        tok = load_tokenizer(tokenizer)
        for path in audio:
            codes = tok.encode(load(path, None))
            if dedup_units:
                codes = tuple(dedup(c)[0] for c in codes)
            out.print(json.dumps({"audio": str(path), "tokenizer": tok.info.name,
                                  "codes": [c.tolist() for c in codes]}), highlight=False,
                      markup=False)
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None


@tokens_app.command("decode")
def tokens_decode(
    tokenizer: Annotated[Path, typer.Argument(help="Tokenizer or codec folder that decodes.")],
    codes_file: Annotated[Path, typer.Argument(help="JSON Lines from `tokens encode`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output audio (a -N suffix "
                      "per line when there are several).")],
    griffin_lim: Annotated[bool, typer.Option("--griffin-lim", help="Decode with Griffin-Lim "
                           "even when the folder has a trained vocoder.")] = False,
) -> None:
    """Turn codes back into audio."""
    import numpy as np

    from speechllm.audio import save
    from speechllm.tokens.load import load_tokenizer

    try:
        tok = load_tokenizer(tokenizer)
        if not hasattr(tok, "decode"):
            raise SpeechLLMError(f"{tok.info.name} has no decoder (units need a unit-to-speech "
                                 "model)")
        if griffin_lim and hasattr(tok, "vocoder"):
            tok.vocoder = None
        lines = [x for x in codes_file.read_text().splitlines() if x.strip()]
        for n, line in enumerate(lines, 1):
            try:
                codes = tuple(np.asarray(c, np.int64) for c in json.loads(line)["codes"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise SpeechLLMError(f"{codes_file}:{n}: not a codes line ({exc})") from None
            target = output if len(lines) == 1 else output.with_name(
                f"{output.stem}-{n}{output.suffix}")
            save(tok.decode(codes), target)
            out.print(f"wrote {target}", highlight=False)
    except OSError as exc:
        raise _fail(SpeechLLMError(f"{codes_file}: {exc.strerror}")) from None
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None


ALIGN_SAVE_EVERY = 50  # clips aligned between saves of the progress (~30 s of Whisper base)


@tokens_app.command("align")
def tokens_align(
    manifest: Annotated[Path, typer.Argument(help="JSONL manifest with each clip's text.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Manifest to write "
                      "(default: <manifest>.aligned.jsonl beside it).")] = None,
    asr: Annotated[str, typer.Option(help="Whisper model for the forced alignment.")] = (
        "whisper-base"),
    redo: Annotated[bool, typer.Option("--redo", help="Align every clip again, even those "
                    "the output already has timings for.")] = False,
    pack: Annotated[float, typer.Option("--pack", min=0, max=29.0, help="Seconds of clips "
                    "aligned together in one Whisper window (it encodes 30 s whatever the "
                    "clip's length; about 14x faster on 1-2 s clips). 0: one clip at a "
                    "time.")] = 29.0,
) -> None:
    """Add word timings to each clip, for token models that speak word by word.

    Each row gets "words": a list of (word, start, end) in seconds. Needed by
    `"interleave_words": true`. Resumes: clips the output already aligned (same audio, same
    text) keep their timings, and so do those an interrupted run had aligned."""
    from speechllm.asr.faster_whisper import FasterWhisperASR
    from speechllm.audio import Audio, load
    from speechllm.eval.manifest import Item, read_manifest, write_manifest
    from speechllm.tokens.align import align_packed, align_words, packs

    target = output or manifest.with_name(manifest.stem + ".aligned.jsonl")
    # progress is written beside the target as it goes (so relative audio paths hold), and
    # an interrupted run resumes from it
    partial = target.with_name(f".{target.name}.partial")
    try:
        items = read_manifest(manifest)
        earlier = [] if redo or not target.is_file() else read_manifest(target)
        # a partial file cut mid-write is ignored: it is only a progress cache
        with contextlib.suppress(SpeechLLMError, ValueError):
            earlier += read_manifest(partial) if partial.is_file() and not redo else []
        done = {(old.audio, old.text): old.fields["words"] for old in earlier
                if "words" in old.fields}
        whisper = FasterWhisperASR(asr) if len(done) < len(items) else None
        rows: dict[int, Item] = {}
        failed: list[str] = []
        kept = 0
        with Progress(TextColumn("aligning"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err, transient=True) as bar:
            job = bar.add_task("align", total=len(items))

            def finish(n: int, item: Item, words: Any) -> None:
                if isinstance(words, Exception):  # kept, without timings
                    failed.append(f"{item.audio.name}: {words}")
                else:
                    timed = [[w, round(a, 3), round(b, 3)] for w, a, b in words]
                    item = dataclasses.replace(item, fields={**item.fields, "words": timed})
                rows[n] = item
                bar.advance(job)
                if len(rows) % ALIGN_SAVE_EVERY == 0:
                    write_manifest([rows[k] for k in sorted(rows)], partial)

            def align(group: list[tuple[int, Item, Audio]]) -> None:
                clips = [(audio, item.text or "") for _, item, audio in group]
                try:  # together; one clip that cannot be aligned sends the group one by one
                    found: list[Any] = align_packed(whisper, clips)
                except (SpeechLLMError, ValueError):
                    found = []
                    for clip in clips:
                        try:
                            found.append(align_words(whisper, *clip))
                        except (SpeechLLMError, ValueError) as exc:
                            found.append(exc)
                for (n, item, _), words in zip(group, found, strict=True):
                    finish(n, item, words)

            def to_align() -> Iterator[tuple[int, Item, Audio]]:
                """The clips still to align, loaded one at a time (the others finished)."""
                nonlocal kept
                for n, item in enumerate(items):
                    if (item.audio, item.text) in done:
                        rows[n] = dataclasses.replace(
                            item, fields={**item.fields, "words": done[item.audio, item.text]})
                        kept += 1
                        bar.advance(job)
                        continue
                    try:
                        yield n, item, load(item.audio)
                    except (SpeechLLMError, ValueError) as exc:
                        finish(n, item, exc)

            for group in packs(to_align(), lambda clip: clip[2].duration, window=pack):
                align(group)
        write_manifest([rows[k] for k in sorted(rows)], partial).replace(target)
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None
    for line in failed[:10]:
        err.print(f"not aligned: {line}", highlight=False, markup=False)
    if len(failed) > 10:
        err.print(f"not aligned: ... and {len(failed) - 10} more", highlight=False)
    out.print(f"aligned {len(rows) - len(failed)} of {len(rows)} clips ({kept} kept from "
              f"before); wrote {target}", highlight=False)
    if rows and len(failed) == len(rows):  # nothing to train on: a script should stop here
        raise typer.Exit(1)


@tokens_app.command("say")
def tokens_say(
    model: Annotated[Path, typer.Argument(help="A trained token model folder (TokenSpeechLM "
                                          "with a unit-to-speech decoder).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output audio file; with "
                                         "--lines, a folder.")],
    text: Annotated[str | None, typer.Argument(help="What to say (or give --lines).")] = None,
    lines: Annotated[Path | None, typer.Option("--lines", help="A text file, one phrase a "
                     "line: each is said into the -o folder (0000.wav, ...) with a "
                     "manifest.jsonl of texts and files; a rerun keeps what it finished.")] = None,
    batch_size: Annotated[int, typer.Option(help="With --lines: phrases the model says at "
                          "once (the same audio at any size, faster in batches).")] = 8,
) -> None:
    """Speak text with a token LM: text -> units (the LM) -> waveform (unit-to-speech)."""
    from speechllm.audio import save
    from speechllm.tokens.model import TokenSpeechLM

    if (text is None) == (lines is None):
        raise _fail(ValueError("give the text to say, or --lines FILE (not both)"))
    if lines is not None:
        _say_lines(model, lines, output, batch_size)
        return
    assert text is not None
    try:
        audio = TokenSpeechLM.from_pretrained(model).say(text)
        save(audio, output)
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None
    out.print(f"wrote {output} ({audio.duration:.2f} s)", highlight=False)


def _say_lines(model: Path, lines: Path, folder: Path, batch_size: int) -> None:
    """`tokens say --lines`: each phrase into its own file, written batch by batch, so an
    interrupted run keeps what it finished and a rerun says only the rest."""
    import numpy as np

    from speechllm.audio import save
    from speechllm.tokens.model import TokenSpeechLM

    if batch_size < 1:
        raise _fail(ValueError(f"--batch-size must be at least 1, not {batch_size}"))
    try:
        texts = [t.strip() for t in lines.read_text(encoding="utf-8").splitlines() if t.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(ValueError(f"cannot read {lines} as text: {exc}")) from None
    if not texts:
        raise _fail(ValueError(f"{lines}: no phrase to say (every line is blank)"))
    index = folder / "manifest.jsonl"
    said: dict[int, dict[str, Any]] = {}
    if index.is_file():  # a rerun: keep each phrase whose file is there and text unchanged
        for line in index.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                row = json.loads(line)
                n = int(Path(row["audio"]).stem)
                if n < len(texts) and row["text"] == texts[n] and (folder / row["audio"]).is_file():
                    said[n] = row
    todo = [n for n in range(len(texts)) if n not in said]
    failed: list[str] = []
    if not todo:
        out.print(f"all {len(texts)} phrases said before; nothing to do ({index})",
                  highlight=False)
        return
    try:
        lm = TokenSpeechLM.from_pretrained(model)
        if lm.voice is None:
            raise ModelError(f"{model}: this token model has no unit-to-speech decoder to "
                             "speak with")
        folder.mkdir(parents=True, exist_ok=True)
        with Progress(TextColumn("saying"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err, transient=True) as bar:
            job = bar.add_task("saying", total=len(texts), completed=len(said))
            for start in range(0, len(todo), batch_size):
                group = todo[start: start + batch_size]
                spoken = lm.speak_units_batch([texts[n] for n in group], batch_size)
                for n, units in zip(group, spoken, strict=True):
                    if not units:
                        failed.append(f"{texts[n]!r}: the model ended the audio before any "
                                      "unit")
                        continue
                    audio = lm.voice.decode((np.asarray(units, np.int64),))
                    save(audio, folder / f"{n:04d}.wav")
                    said[n] = {"audio": f"{n:04d}.wav", "text": texts[n],
                               "seconds": round(audio.duration, 3)}
                # the index after every batch: what is listed is finished
                index.write_text("".join(json.dumps(said[k]) + "\n" for k in sorted(said)),
                                 encoding="utf-8")
                bar.update(job, completed=len(said) + len(failed))
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None
    for line in failed:
        err.print(f"not said: {line}", highlight=False, markup=False)
    out.print(f"said {len(said)} of {len(texts)} phrases ({len(texts) - len(todo)} kept from "
              f"before); wrote {index}", highlight=False)
    if failed:
        raise typer.Exit(1)


def _backchannels(given: str | None) -> tuple[str, ...]:
    from speechllm.turn.barge_in import BACKCHANNELS
    if given is None:
        return BACKCHANNELS
    phrases = tuple(p.strip() for p in given.split(",") if p.strip())
    if not phrases:
        raise typer.BadParameter("--backchannels needs at least one phrase")
    return phrases


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option("--config", help="JSON approach config "
                      "(default: the cascade with the options below).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    asr: Annotated[str, typer.Option(help="ASR model name or path.")] = "whisper-base",
    llm: Annotated[str, typer.Option(help="Chat GGUF name or path.")] = "qwen2.5-0.5b-instruct",
    api_key: Annotated[str | None, typer.Option(envvar="SPEECHLLM_API_KEY", help="Require "
                       "this bearer key on every route and the WebSocket.")] = None,
    workers: Annotated[int, typer.Option(help="Turns that run at once; more queue in "
                       "arrival order.")] = 1,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body.")] = 25.0,
    max_audio_seconds: Annotated[float, typer.Option(help="Longest audio per request or "
                                 "voice turn.")] = 600.0,
    idle_timeout: Annotated[float, typer.Option(help="Close voice sessions idle this many "
                            "seconds.")] = 120.0,
    model_id: Annotated[str, typer.Option(help="Model id listed by /v1/models.")] = "speechllm",
    end_silence: Annotated[float, typer.Option(help="Seconds of silence that end a voice "
                           "turn that sounds and reads finished.")] = 0.9,
    speculate_after: Annotated[float, typer.Option(help="Seconds of silence after which a "
                               "voice turn's answer is prepared, unseen until the turn "
                               "ends (0: off).")] = 0.2,
    patient_silence: Annotated[float, typer.Option(help="Seconds of silence that end a voice "
                               "turn that sounds or reads unfinished.")] = 1.5,
    turn_model: Annotated[str, typer.Option(help="End-of-turn model for voice turns, or "
                          "'none' (see docs/serving.md).")] = "none",
    barge_in: Annotated[str, typer.Option(help="'words': only an interruption cancels an "
                        "answer, not a backchannel, echo or an unclear word; 'vad': any "
                        "speech does.")] = "words",
    backchannels: Annotated[str | None, typer.Option(help="Comma-separated phrases that "
                            "never cancel an answer (default: uh-huh, yeah, okay, ...).")
                            ] = None,
    shutdown_grace: Annotated[int, typer.Option(min=0, help="On SIGTERM, seconds to let "
                              "answers in flight finish before they are cut.")] = 30,
) -> None:
    """Serve a speech LLM: OpenAI-compatible HTTP API, realtime voice and a web page.

    Realtime voice is a WebSocket at /v1/realtime, the page is at /. Models load once, at
    start-up."""
    uvicorn = require("uvicorn", "serve")
    from speechllm.serve.app import create_app
    from speechllm.serve.settings import ServeSettings

    try:
        approach_config = _approach_config(config, asr, llm, Post.none, True)
        from speechllm import approach
        approach.check(approach_config)
        if config is None:
            _ensure_models([n for n in (asr, llm, "piper-joe", "silero-vad", turn_model)
                            if n in models.REGISTRY])
        settings = ServeSettings(approach=approach_config, model_id=model_id, api_key=api_key,
                                 workers=workers,
                                 max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                                 max_audio_seconds=max_audio_seconds,
                                 idle_timeout=idle_timeout, end_silence=end_silence,
                                 speculate_after=speculate_after,
                                 patient_silence=patient_silence, turn_model=turn_model,
                                 barge_in=barge_in, backchannels=_backchannels(backchannels))
    except (SpeechLLMError, ValueError) as exc:
        raise _fail(exc) from None
    err.print(f"speechllm serve: http://{host}:{port}/ (API under /v1, voice at /v1/realtime)"
              + (", API key required" if api_key else ""), highlight=False)
    # uvicorn finishes in-flight requests on SIGTERM, then re-raises the signal; exiting 0
    # there tells service managers the shutdown went as planned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from speechllm.serve.ws_protocol import AnsweringWebSocketProtocol
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info",
                timeout_graceful_shutdown=shutdown_grace, ws=AnsweringWebSocketProtocol)


async def _stream_turn(lm: SpeechLM, request: Request, live: bool) -> Response:
    """Print the transcript and the answer as they arrive; return the final Response."""
    from speechllm.speechlm import Done, ErrorEvent, TextDelta, TranscriptEvent

    async for event in lm.stream(request):
        if isinstance(event, TranscriptEvent) and live:
            out.print(f"[bold cyan]you:[/] {event.text}", highlight=False)
            out.print("[bold green]assistant:[/] ", end="")
        elif isinstance(event, TextDelta) and live:
            out.print(event.text, end="", highlight=False, markup=False)
        elif isinstance(event, ErrorEvent):
            if live:
                out.print()
            kind = getattr(errors, event.kind, SpeechLLMError)
            raise (kind if isinstance(kind, type) and issubclass(kind, SpeechLLMError)
                   else SpeechLLMError)(event.message)
        elif isinstance(event, Done):
            if live:
                out.print()
            return event.response
    raise SpeechLLMError("the turn ended without an answer")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
