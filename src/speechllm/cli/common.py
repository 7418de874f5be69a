"""What every command shares: the consoles, error exits, progress bars, model assembly."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from speechllm import models
from speechllm.errors import SpeechLLMError
from speechllm.tts.base import TTS_BACKENDS

out = Console(soft_wrap=True)  # no hard line breaks: scripts and tests grep this
err = Console(stderr=True, soft_wrap=True)

USAGE_ERROR_EXIT = 3  # a ValueError from the library: the input cannot be used


class Post(StrEnum):
    none = "none"
    rescore = "rescore"
    correct = "correct"


TTS_HELP = f"TTS backend: {', '.join(TTS_BACKENDS.names())} or none."


def tts_name(value: str) -> str:
    """`--tts`: a registered TTS backend, or none (the registry lists the valid names)."""
    if value != "none" and value not in TTS_BACKENDS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(TTS_BACKENDS)}, none")
    return value


def fail(exc: SpeechLLMError | ValueError) -> typer.Exit:
    """Print `error: ...` and give the exit that goes with the error (see `speechllm
    --help`); raise what it returns."""
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
    return typer.Exit(exc.exit_code if isinstance(exc, SpeechLLMError) else USAGE_ERROR_EXIT)


@contextlib.contextmanager
def exits_on_error() -> Iterator[None]:
    """Inside: a SpeechLLMError or ValueError ends the command with its message and exit
    code instead of a traceback."""
    try:
        yield
    except (SpeechLLMError, ValueError) as exc:
        raise fail(exc) from None


def progress(label: str = "{task.description}", *, count: bool = True, loss: bool = False,
             transient: bool = False, disable: bool = False,
             extra: tuple[ProgressColumn, ...] = ()) -> Progress:
    """A progress bar on stderr: label, bar, done/total, the loss (a task field), time left."""
    columns: list[ProgressColumn] = [TextColumn(label), BarColumn()]
    if count:
        columns.append(MofNCompleteColumn())
    if loss:
        columns.append(TextColumn("{task.fields[loss]}"))
    columns += [*extra, TimeRemainingColumn()]
    return Progress(*columns, console=err, transient=transient, disable=disable)


def step_report(bar: Progress, job: TaskID, every: int, log: bool = True
                ) -> Callable[[int, int, float], None]:
    """A training loop's progress callback: the live bar, and on a log file (where rich
    draws nothing until the end) a line every `every` steps and at the last."""

    def report(step: int, total: int, loss: float) -> None:
        bar.update(job, completed=step, loss=f"loss {loss:.4f}")
        if log and not err.is_terminal and (step % every == 0 or step == total):
            err.print(f"step {step}/{total} loss {loss:.4f}", highlight=False)

    return report


def ensure_models(names: list[str]) -> None:
    """Assemble what is missing, with a progress bar (only the first run does any work)."""
    todo = [r.name for r in models.status(names, check=False) if r.status == "not assembled"]
    if not todo:
        return
    with progress(count=False, transient=True, extra=(DownloadColumn(),)) as bar:
        for name in todo:
            task = bar.add_task(f"assembling {name}", total=None)

            def show(done: int, total: int, task: TaskID = task) -> None:
                bar.update(task, completed=done, total=total)

            models.ensure(name, show)


def embedded(*names: Any) -> list[str]:
    """The names among `names` that are embedded models (the rest are paths or servers)."""
    return [str(n) for n in names if str(n) in models.REGISTRY]


def whisper_language(flag: str, given: str | None) -> str | None:
    """A Whisper language code from `flag` (None or 'auto': detect it on every turn),
    refused before any model loads if Whisper does not know it."""
    if given is None or given == "auto":
        return None
    from speechllm._optional import require
    # Whisper's codes (a private table, but the one faster-whisper checks against)
    known = require("faster_whisper.tokenizer", "asr")._LANGUAGE_CODES
    if given not in known:
        raise typer.BadParameter(f"{flag} {given!r} is not a Whisper language code (en, de, "
                                 "fr, ...) or 'auto'")
    return given


def approach_config(config_file: Path | None, asr: str, llm: str, post: Post,
                    speak: bool, language: str | None = None) -> dict[str, object]:
    """The approach settings of `--config FILE`, or the cascade the flags name (`language`:
    what the recogniser is told users speak; None detects it on every turn)."""
    if config_file is None:  # TTS only loads for tasks that keep spoken answers
        settings: dict[str, object] = {"approach": "cascade", "asr": asr, "llm": llm,
                                       "postprocess": post.value,
                                       "tts": "piper" if speak else None}
        if language is not None:
            from speechllm.cascade.pipeline import CascadeConfig
            window = CascadeConfig().asr.window_seconds  # keep the default's other options
            settings["options"] = {"asr": {"language": language, "window_seconds": window}}
        return settings
    if language is not None:
        raise typer.BadParameter("--language goes with the flags' cascade; with --config, "
                                 'set "options": {"asr": {"language": ...}} in the file')
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
