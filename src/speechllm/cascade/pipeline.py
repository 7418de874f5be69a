"""The text-based cascade: VAD -> ASR (-> post-processing) -> LLM -> clause splitter -> TTS.

It streams: the LLM generates in a worker thread while each finished clause is synthesised,
so the first audio is ready long before the answer is complete.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace

from speechllm.asr.base import ASR, ASROptions, Segment
from speechllm.audio import Audio
from speechllm.cascade.clauses import ClauseSplitter, speakable
from speechllm.cascade.phrases import PhraseSpotter, Shortlist, hear_listed, least_sure
from speechllm.cascade.postprocess import PostProcessor
from speechllm.errors import NoSpeechError
from speechllm.llm.base import ChatLLM, GenerationOptions, ToolSet, stream_tools
from speechllm.speechlm import (
    AudioChunk,
    Done,
    Event,
    Message,
    Request,
    Response,
    SpanEvent,
    TextDelta,
    ToolCallEvent,
    TranscriptEvent,
    Usage,
)
from speechllm.threaded_stream import Cancelled, worker_events
from speechllm.timing import Stopwatch
from speechllm.tools import ToolCall, ToolCallDelta, fit_output
from speechllm.tts.base import TTS
from speechllm.vad.base import VAD, speech_span

HOTWORD_MODES = ("shortlist", "all", "off")  # CascadeConfig.context_hotwords

DEFAULT_SYSTEM = (
    "You are a helpful voice assistant. Your reply is spoken aloud, so answer in one to three "
    "short sentences of plain text, with no lists and no markdown."
)


@dataclass(frozen=True)
class CascadeConfig:
    system: str = DEFAULT_SYSTEM  # used when a Request brings no system prompt
    # A 20 s encoder window instead of Whisper's 30 s: 1.8-3.2x faster ASR on short turns with
    # no loss of accuracy on the measured sets (docs/benchmarks.md); longer turns use 30 s.
    asr: ASROptions = field(default_factory=lambda: ASROptions(window_seconds=20.0))
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    nbest: int = 5  # hypotheses handed to the post-processor (when one is set)
    stream_tts: bool = True  # False: TTS waits for the whole answer (the classic cascade)
    min_clause_chars: int = 24  # shortest clause cut at a comma
    first_clause_words: int = 4  # > 0: cut the first clause after this many words
    # Pause the LLM while the first clause is synthesised, so TTS has every core for the one
    # step that sets ttfa; later clauses overlap with generation (which outruns playback).
    first_clause_priority: bool = True
    vad_pad: float = 0.2  # seconds kept around the speech VAD finds
    # contextual biasing: a listed phrase heard as something that sounds this alike (0-1) is
    # put back (speechllm.cascade.phrases); 1.0 turns it off, the default: after the
    # shortlist's second pass it added nothing on the biasing dev set (0.85 if used)
    phrase_match: float = 1.0
    # context phrases as Whisper hotwords. "shortlist": the few that sound like part of a
    # first, unbiased transcript go to a second pass, and only the stretches where it brings a
    # listed phrase in are taken from it; "all": the whole list in one pass (on the biasing
    # set it raised other-word WER 0.25 -> 0.32); "off". The shortlist's size and floor and
    # the spotter's threshold were chosen on the biasing dev set (docs/benchmarks.md).
    context_hotwords: str = "shortlist"
    shortlist_size: int = Shortlist.size  # at most this many phrases in the second pass
    shortlist_floor: float = Shortlist.floor  # how alike (0-1) a run must sound to a phrase
    # no second pass where the first is at least this sure of every segment (mean token
    # log-probability)
    shortlist_sure: float = Shortlist.sure
    # tool calls decoded under a grammar from the tools' schemas (local LLMs; a server's
    # calls are checked either way); False: the model writes them freely (docs/tools.md)
    constrained_tools: bool = True
    # rounds of tool calls per user turn before the model answers from the results; one
    # suits the embedded 0.5B model (asked again, it calls some other tool)
    tool_rounds: int = 1

    def __post_init__(self) -> None:
        if self.context_hotwords not in HOTWORD_MODES:
            raise ValueError(f"context_hotwords must be one of {', '.join(HOTWORD_MODES)}, "
                             f"got {self.context_hotwords!r}")
        if not 0.0 <= self.shortlist_floor <= 1.0:
            raise ValueError(f"shortlist_floor must be in [0, 1], got {self.shortlist_floor}")
        for name in ("nbest", "tool_rounds", "shortlist_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.phrase_match <= 1.0:
            raise ValueError(f"phrase_match must be in (0, 1], got {self.phrase_match}")
        for name in ("min_clause_chars", "first_clause_words", "vad_pad"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


class CascadeSpeechLM:
    """A `SpeechLM` built from components; `vad`, `tts` and `postprocess` are optional."""

    def __init__(self, asr: ASR, llm: ChatLLM, tts: TTS | None = None, vad: VAD | None = None,
                 postprocess: PostProcessor | None = None,
                 config: CascadeConfig | None = None) -> None:
        self.asr, self.llm, self.tts, self.vad = asr, llm, tts, vad
        self.postprocess = postprocess
        self.config = config or CascadeConfig()

    # -- the SpeechLM interface -----------------------------------------------------------

    def respond(self, request: Request) -> Response:
        done: list[Response] = []
        self._run(request, lambda e: done.append(e.response) if isinstance(e, Done) else None,
                  threading.Event())
        return done[0]

    def stream(self, request: Request) -> AsyncIterator[Event]:
        """Events in order, ending with Done, or ErrorEvent if the turn failed.

        The work runs in a worker thread; closing this iterator early cancels it.
        """
        return worker_events(lambda emit, cancel: self._run(request, emit, cancel))

    # -- the work ------------------------------------------------------------------------

    def _hear(self, request: Request, clock: Stopwatch,
              emit: Callable[[Event], None]) -> tuple[str, tuple[Segment, ...], str | None]:
        """(transcript, its timed segments in seconds of the request's audio, the language it
        was heard as)."""
        assert request.audio is not None
        audio, offset = request.audio, 0.0
        if self.vad is not None:
            with clock.span("vad"):
                offset, end = speech_span(audio, self.vad, self.config.vad_pad)
                audio = audio.slice(offset, end)
        options = self.config.asr
        if request.language is not None:
            options = replace(options, language=request.language)
        if request.intent == "translate":
            options = replace(options, task="translate")
        context = request.context
        if context:  # contextual biasing: the recogniser's prompt and hotwords
            hot = ", ".join(context.phrases) if self.config.context_hotwords == "all" else ""
            options = replace(options, initial_prompt=context.text.strip() or None,
                              hotwords=hot or None)
        segments: tuple[Segment, ...] = ()
        language = options.language
        post = self.postprocess if request.intent != "translate" else None
        with clock.span("asr"):
            if post is not None:  # one N-best list per segment of any length of audio
                parts = self.asr.nbest_segments(audio, self.config.nbest, options)
                language = next((p.language for p in parts if p.language), language)
            else:
                heard = self.asr.transcribe(audio, options)
                text, language = heard.text, heard.language or language
                segments = tuple(replace(s, start=s.start + offset, end=s.end + offset)
                                 for s in heard.segments)
        if post is not None:
            with clock.span("postprocess"):
                chosen = [post.select(p.hypotheses, context) for p in parts]
            text = " ".join(c for c in chosen if c)
            segments = tuple(Segment(p.start + offset, p.end + offset, c,
                                     p.hypotheses[0].score, 0.0)
                             for p, c in zip(parts, chosen, strict=True))
        if context and context.phrases and self.config.context_hotwords == "shortlist":
            with clock.span("asr_listed"):  # a second pass, where a phrase sounds likely
                text = hear_listed(self.asr, audio, options, text, context.phrases, Shortlist(
                    self.config.shortlist_size, self.config.shortlist_floor,
                    self.config.shortlist_sure), least_sure(segments))
        if context and context.phrases and self.config.phrase_match < 1.0:
            text = PhraseSpotter(self.config.phrase_match).apply(text, context.phrases)
        for s in clock.freeze().spans:
            emit(SpanEvent(s))
        if not text.strip():
            raise NoSpeechError("the speech recogniser heard no words")
        return text.strip(), segments, language

    def _run(self, request: Request, emit: Callable[[Event], None],
             cancel: threading.Event) -> None:
        clock = Stopwatch()
        transcript = language = None
        if request.audio is not None:
            transcript, segments, language = self._hear(request, clock, emit)
            emit(TranscriptEvent(transcript))
            if request.intent != "respond":
                clock.mark_text()
                emit(Done(Response(transcript, transcript, None, clock.freeze(),
                                   request.history, segments, language=language)))
                return
        user = transcript if transcript is not None else (request.text or "").strip()
        said = () if request.continues_tools and not user else (Message("user", user),)
        earlier = [replace(m, content=fit_output(m.content)) if m.role == "tool" else m
                   for m in request.history]
        messages = [Message("system", request.system or self.config.system), *earlier, *said]
        gen = self.config.generation
        if request.max_tokens is not None:  # else the config's own limit holds
            gen = replace(gen, max_tokens=request.max_tokens)

        pieces: list[str] = []
        calls: list[ToolCall] = []
        audio_parts: list[Audio] = []
        speak = self.tts is not None and request.want_audio
        splitter = ClauseSplitter(self.config.min_clause_chars, self.config.first_clause_words)
        llm_may_run = threading.Event()
        llm_may_run.set()

        def say(clause: str) -> None:
            assert self.tts is not None
            start = clock.elapsed()
            if not audio_parts and self.config.first_clause_priority:
                llm_may_run.clear()
            try:
                for part in self.tts.stream(clause):
                    if cancel.is_set():
                        raise Cancelled
                    clock.mark_audio()
                    audio_parts.append(part)
                    emit(AudioChunk(part, clause))
            finally:
                llm_may_run.set()
            emit(SpanEvent(clock.add("tts", start, clock.elapsed())))

        llm_start, began = clock.elapsed(), False
        for delta in self._generate(request, messages, gen, cancel, llm_may_run):
            if not began:
                began = True
                clock.mark_text()  # a tool call's first piece counts as the first text
                emit(SpanEvent(clock.add("prefill", llm_start, clock.elapsed())))
            if isinstance(delta, ToolCallDelta):
                emit(delta)
                continue
            if isinstance(delta, ToolCall):
                emit(ToolCallEvent(len(calls), delta))
                calls.append(delta)
                continue
            pieces.append(delta)
            emit(TextDelta(delta))
            if speak and self.config.stream_tts:
                for clause in splitter.feed(delta):
                    say(clause)
        first_token = clock.freeze().ttft
        emit(SpanEvent(clock.add("decode", first_token or llm_start, clock.elapsed())))
        answer = "".join(pieces).strip()
        if speak:
            rest = splitter.flush() if self.config.stream_tts else [speakable(answer)]
            for clause in rest:
                if clause:
                    say(clause)
        timings = clock.freeze()
        history = (*request.history, *said,
                   Message("assistant", answer, tool_calls=tuple(calls)))
        audio = Audio.concat(audio_parts) if audio_parts else None
        emit(Done(Response(answer, transcript, audio, timings, history,
                           tool_calls=tuple(calls),
                           usage=self._usage(request, messages, answer, calls),
                           language=language)))

    def _usage(self, request: Request, messages: list[Message], answer: str,
               calls: list[ToolCall]) -> Usage | None:
        """The LLM's token counts, for LLMs that can count (the embedded one)."""
        count = getattr(self.llm, "usage", None)
        if count is None:
            return None
        offered = request.tools if request.tool_choice != "none" else ()
        usage: Usage | None = count(messages, offered, answer, calls)
        return usage

    def _llm_stream(self, request: Request, messages: list[Message], gen: GenerationOptions
                    ) -> Iterator[str | ToolCallDelta | ToolCall]:
        if not request.uses_tools:
            return self.llm.stream_chat(messages, gen)
        tools = ToolSet(request.tools, request.tool_choice, self.config.constrained_tools,
                        self.config.tool_rounds)
        return stream_tools(self.llm, messages, gen, tools)

    def _generate(self, request: Request, messages: list[Message], gen: GenerationOptions,
                  cancel: threading.Event, may_run: threading.Event
                  ) -> Iterator[str | ToolCallDelta | ToolCall]:
        """LLM deltas, produced in a worker thread so TTS can run while the LLM generates."""
        if not (self.tts is not None and self.config.stream_tts):
            for delta in self._llm_stream(request, messages, gen):
                if cancel.is_set():
                    raise Cancelled
                yield delta
            return
        deltas: queue.Queue[str | ToolCallDelta | ToolCall | BaseException | None] = \
            queue.Queue()
        stop = threading.Event()  # set when the consumer leaves, for any reason

        def produce() -> None:
            try:
                for delta in self._llm_stream(request, messages, gen):
                    if stop.is_set() or cancel.is_set():
                        break
                    deltas.put(delta)
                    may_run.wait()  # held while the first clause is being synthesised
            except BaseException as exc:
                deltas.put(exc)
            finally:
                deltas.put(None)

        worker = threading.Thread(target=produce, name="cascade-llm", daemon=True)
        worker.start()
        try:
            while (item := deltas.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if cancel.is_set():
                    raise Cancelled
                yield item
        finally:
            stop.set()
            may_run.set()
            worker.join()
