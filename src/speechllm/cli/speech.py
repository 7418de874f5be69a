"""Commands on speech itself: models, transcribe, speak, chat."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from speechllm import audio as audio_io
from speechllm import errors, models
from speechllm.cli.common import (
    TTS_HELP,
    Post,
    embedded,
    ensure_models,
    err,
    exits_on_error,
    fail,
    out,
    progress,
    tts_name,
    whisper_language,
)
from speechllm.errors import SpeechLLMError
from speechllm.speechlm import Context, Request, Response, SpeechLM

MAX_TOOL_ROUNDS = 4  # rounds of calls in one turn before the assistant must answer
CONTEXT_HELP = ("Names and terms likely to be said, and/or what the talk is about: a file (one "
                "phrase a line) or the text itself (comma-separated phrases, or a sentence).")


class Task(StrEnum):
    transcribe = "transcribe"
    to_english = "translate"  # not `translate`: that name is str.translate


def models_cmd(
    assemble: Annotated[bool, typer.Option(help="Assemble and verify every model now.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the embedded models with status, size and path."""
    with exits_on_error():
        if assemble:
            ensure_models(list(models.REGISTRY))
        rows = models.status()
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
    context: Annotated[str | None, typer.Option(help=CONTEXT_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines, one per file.")] = False,
) -> None:
    """Transcribe (or translate into English) audio files with Whisper."""
    from speechllm.asr.base import ASR_BACKENDS, ASROptions
    from speechllm.cascade.phrases import PhraseSpotter, Shortlist, hear_listed, least_sure
    from speechllm.cascade.pipeline import CascadeConfig

    spot = CascadeConfig.phrase_match  # the cascade's default

    with exits_on_error():
        bias = Context.read(context) if context else Context()
        options = ASROptions(task=task.value, language=language, beam_size=beam,
                             word_timestamps=words, initial_prompt=bias.text or None)
        ensure_models(embedded(model))
        with err.status(f"loading {model}"):
            asr = ASR_BACKENDS.get("faster-whisper")(model)
    failed = 0
    with progress(count=False, transient=True, disable=len(files) < 2) as bar:
        job = bar.add_task("transcribing", total=len(files))
        for path in files:
            try:
                audio = audio_io.load(path)
                result = asr.transcribe(audio, options)
                if bias.phrases:  # as the cascade does by default: a second pass with the
                    # phrases that sound likely as hotwords, then (if on) the phrase spotter
                    text = hear_listed(asr, audio, options, result.text, bias.phrases,
                                       Shortlist(), least_sure(result.segments))
                    if spot < 1.0:
                        text = PhraseSpotter(spot).apply(text, bias.phrases)
                    result = dataclasses.replace(result, text=text)
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


def speak(
    text: Annotated[str, typer.Argument(help="What to say.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Audio file to write.")],
    tts: Annotated[str, typer.Option(callback=tts_name, help=TTS_HELP)] = "piper",
    voice: Annotated[str | None, typer.Option(help="Piper voice (.onnx path) or espeak "
                                                   "voice name.")] = None,
) -> None:
    """Synthesise TEXT to an audio file."""
    from speechllm.tts.base import make_tts, synthesize

    if not text.strip():
        raise fail(ValueError("nothing to say: TEXT is empty"))
    if tts == "none":
        raise fail(ValueError("speak needs a TTS backend: piper or espeak"))
    with exits_on_error():
        speech = synthesize(make_tts(tts, voice), text)
        audio_io.save(speech, output)
    err.print(f"wrote {output} ({speech.duration:.2f} s)")


def chat(
    files: Annotated[list[Path], typer.Argument(help="Spoken turns, in order (one conversation).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Reply audio; with several "
                                                "turns, -1, -2, ... are added.")] = None,
    asr: Annotated[str, typer.Option(help="ASR model name or path.")] = "whisper-base",
    llm: Annotated[str, typer.Option(help="Chat GGUF name/path, or the server's model name "
                                          "with --llm-url.")] = "qwen2.5-0.5b-instruct",
    llm_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server, e.g. "
                                                     "http://127.0.0.1:8000/v1")] = None,
    tts: Annotated[str, typer.Option(callback=tts_name, help=TTS_HELP)] = "piper",
    voice: Annotated[str | None, typer.Option(help="TTS voice.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    post: Annotated[Post, typer.Option(help="ASR post-processing.")] = Post.none,
    language: Annotated[str, typer.Option(help="Language spoken (a Whisper code such as "
                        "'en'), or 'auto' to detect it on every turn.")] = "auto",
    stream: Annotated[bool, typer.Option(help="Speak each clause as soon as it is "
                                              "written.")] = True,
    max_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 256,
    context: Annotated[str | None, typer.Option(help=CONTEXT_HELP)] = None,
    tools: Annotated[str | None, typer.Option(
        help="Let the assistant call the public functions of this Python module (a module "
             "name or a .py file); their annotations and docstrings are the schemas.")] = None,
    tool_timeout: Annotated[float, typer.Option(help="Seconds a tool may run.")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Ask spoken questions; print the transcript, the answer and a timing waterfall."""
    from speechllm.cascade.build import CascadeSpec, build_cascade
    from speechllm.cascade.pipeline import CascadeConfig
    from speechllm.speechlm import Message
    from speechllm.toolbox import Toolbox
    from speechllm.waterfall import waterfall

    with exits_on_error():
        turns = [audio_io.load(f) for f in files]  # fail on bad input before loading models
        spoken = whisper_language("--language", language)
        bias = Context.read(context) if context else None
        box = Toolbox.from_module(tools, tool_timeout) if tools else None
        spec = CascadeSpec(asr=asr, llm=llm, llm_url=llm_url,
                           tts=None if tts == "none" else tts, voice=voice,
                           postprocess=post.value)
        wanted = embedded(asr, *(() if llm_url else (llm,)))
        if post is Post.rescore:
            wanted.append(spec.scorer)
        ensure_models(wanted)
        with err.status("loading models"):
            defaults = CascadeConfig()
            lm = build_cascade(spec, CascadeConfig(
                stream_tts=stream, asr=dataclasses.replace(defaults.asr, language=spoken)))
    history: tuple[Message, ...] = ()
    for i, (path, speech) in enumerate(zip(files, turns, strict=True), 1):
        request = Request(audio=speech, system=system, history=history,
                          want_audio=tts != "none" and output is not None,
                          max_tokens=max_tokens, context=bias,
                          tools=box.tools if box else ())
        ran: list[dict[str, object]] = []
        with exits_on_error():
            response = asyncio.run(_stream_turn(lm, request, live=not as_json))
            for _ in range(MAX_TOOL_ROUNDS):
                if box is None or not response.tool_calls:
                    break
                results = [box.run(c) for c in response.tool_calls]
                for r in results:
                    ran.append({"name": r.call.name, "arguments": r.call.args(),
                                "output": r.output, "ok": r.ok})
                    if not as_json:
                        out.print("[bold magenta]tool:[/] " + escape(
                            f"{r.call.name}({r.call.arguments}) -> {r.output}"),
                            highlight=False)
                request = dataclasses.replace(request, audio=None, context=None, history=(
                    *response.history,
                    *(Message("tool", r.output, tool_call_id=r.call.id) for r in results)))
                response = asyncio.run(_stream_turn(lm, request, live=not as_json,
                                                    heard=False))
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
                "total": t.total, "spans": [dataclasses.asdict(s) for s in t.spans],
                "tools": ran}))
        else:
            for line in waterfall(response.timings):
                out.print(f"  {line}", highlight=False)
            if target and response.audio is not None:
                out.print(f"  [dim]reply audio: {target} ({response.audio.duration:.1f} s)[/]")


async def _stream_turn(lm: SpeechLM, request: Request, live: bool,
                       heard: bool = True) -> Response:
    """Print the transcript and the answer as they arrive; return the final Response."""
    from speechllm.speechlm import Done, ErrorEvent, TextDelta, ToolCallEvent, TranscriptEvent

    if live and not heard:  # a turn answering from tool results
        out.print("[bold green]assistant:[/] ", end="")
    async for event in lm.stream(request):
        if isinstance(event, TranscriptEvent) and live:
            out.print(f"[bold cyan]you:[/] {event.text}", highlight=False)
            out.print("[bold green]assistant:[/] ", end="")
        elif isinstance(event, TextDelta) and live:
            out.print(event.text, end="", highlight=False, markup=False)
        elif isinstance(event, ToolCallEvent) and live:
            out.print(f"(calls {event.call.name}({event.call.arguments}))", end=" ",
                      highlight=False, markup=False)
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
