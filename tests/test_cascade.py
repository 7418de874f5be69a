from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from speechllm.asr.base import ASROptions
from speechllm.audio import Audio
from speechllm.errors import NoSpeechError
from speechllm.speechlm import (
    AudioChunk,
    Done,
    ErrorEvent,
    Request,
    SpanEvent,
    SpeechLM,
    TextDelta,
    TranscriptEvent,
)

from .conftest import say


def collect(lm, request):
    async def run():
        return [e async for e in lm.stream(request)]
    return asyncio.run(run())


def test_cascade_is_a_speechlm(cascade):
    assert isinstance(cascade, SpeechLM)


def test_spoken_factual_question_gets_a_correct_spoken_answer(cascade, asr, question):
    response = cascade.respond(Request(audio=question))
    assert "capital of france" in response.transcript.lower()
    assert "paris" in response.text.lower()
    assert response.audio is not None and response.audio.duration > 0.5
    heard = asr.transcribe(response.audio, ASROptions(language="en")).text.lower()
    assert "paris" in heard  # the answer is in the audio, not only the text
    t = response.timings
    assert 0 < t.ttft <= t.ttfa <= t.total
    stages = t.stages()
    assert {"vad", "asr", "prefill", "decode", "tts"} <= set(stages)
    assert stages["asr"] > 0 and all(v >= 0 for v in stages.values())


def test_stream_speaks_before_the_answer_is_finished(cascade):
    request = Request(text="Describe the sun in three sentences.", max_tokens=120)
    events = collect(cascade, request)
    kinds = [type(e) for e in events]
    assert kinds[-1] is Done
    first_audio = kinds.index(AudioChunk)
    last_text = len(kinds) - 1 - kinds[::-1].index(TextDelta)
    assert first_audio < last_text, "no audio was emitted while the LLM was still writing"
    done = events[-1].response
    assert done.text == "".join(e.text for e in events if isinstance(e, TextDelta)).strip()
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    assert len(chunks) >= 2
    assert done.audio.duration == pytest.approx(sum(c.audio.duration for c in chunks))
    assert any(isinstance(e, SpanEvent) and e.span.name == "tts" for e in events)


def test_non_streaming_mode_waits_for_the_whole_answer(cascade):
    classic = type(cascade)(cascade.asr, cascade.llm, cascade.tts, cascade.vad,
                            config=replace(cascade.config, stream_tts=False))
    events = collect(classic, Request(text="Name two oceans, in two sentences.", max_tokens=60))
    kinds = [type(e) for e in events]
    last_text = len(kinds) - 1 - kinds[::-1].index(TextDelta)
    assert kinds.index(AudioChunk) > last_text


def test_conversation_is_kept_across_turns(cascade, voice):
    first = cascade.respond(Request(audio=say(voice, "Hello, my name is Alice."),
                                    want_audio=False))
    assert "alice" in first.transcript.lower()
    second = cascade.respond(Request(audio=say(voice, "What is my name?"),
                                     history=first.history, want_audio=False))
    assert "alice" in second.text.lower()
    assert [m.role for m in second.history] == ["user", "assistant", "user", "assistant"]


def test_system_prompt_is_obeyed(cascade):
    r = cascade.respond(Request(text="What is two plus two?", want_audio=False,
                                system="Answer with a single number in digits and nothing else."))
    assert r.text.strip().rstrip(".") == "4"


def test_silence_is_an_error_not_an_answer(cascade):
    with pytest.raises(NoSpeechError):
        cascade.respond(Request(audio=Audio.silence(2.0)))
    events = collect(cascade, Request(audio=Audio.silence(2.0)))
    assert len(events) == 1 and isinstance(events[0], ErrorEvent)
    assert events[0].kind == "NoSpeechError" and "no speech" in events[0].message
    # and the same object keeps serving afterwards
    assert "paris" in cascade.respond(Request(text="Capital of France? One word.",
                                              want_audio=False)).text.lower()


def test_noise_only_audio_is_refused(cascade):
    noise = Audio((0.02 * np.random.default_rng(1).standard_normal(32000)).astype(np.float32),
                  16000)
    with pytest.raises(NoSpeechError):
        cascade.respond(Request(audio=noise))


def test_first_events_are_transcript_then_text(cascade, question):
    events = collect(cascade, Request(audio=question, want_audio=False))
    content = [e for e in events if not isinstance(e, SpanEvent)]
    assert isinstance(content[0], TranscriptEvent)
    assert isinstance(content[1], TextDelta)
    assert not any(isinstance(e, AudioChunk) for e in events)
    assert events[-1].response.audio is None


def test_request_validation():
    with pytest.raises(ValueError, match="audio or non-empty text"):
        Request(text="  ")
    with pytest.raises(ValueError, match="max_tokens"):
        Request(text="hi", max_tokens=0)


def test_the_configs_answer_limit_holds_unless_a_request_sets_its_own(asr, chat_llm):
    """`options.generation.max_tokens` from a config is the answer's limit; a request's own
    `max_tokens` overrides it (it used to be overridden by the request's default, always)."""
    from dataclasses import replace

    from speechllm.cascade.build import spec_from_dict
    from speechllm.cascade.pipeline import CascadeSpeechLM

    options = spec_from_dict({"options": {"generation": {"max_tokens": 4}}}).options
    short = CascadeSpeechLM(asr, chat_llm, config=options)
    ask = Request(text="Tell me a long story about a dragon and a knight.", want_audio=False)
    clipped = short.respond(ask).text
    assert 1 <= len(clipped.split()) <= 4, clipped
    longer = short.respond(replace(ask, max_tokens=40)).text
    assert len(longer.split()) > 8, longer


def test_token_usage_equals_llama_cpps_own_count(chat_llm, cascade):
    """The usage a response reports is what llama.cpp counts for the same conversation when
    it answers without streaming (its `usage`), and the cascade passes it on."""
    from speechllm.speechlm import Message, Request

    messages = [Message("system", "Answer in one short sentence."),
                Message("user", "What is the capital of Italy?")]
    own = chat_llm._llm.create_chat_completion(
        messages=[{"role": m.role, "content": m.content} for m in messages], max_tokens=32,
        temperature=0.0)
    counted = chat_llm.usage(messages, (), own["choices"][0]["message"]["content"])
    assert (counted.input_tokens, counted.output_tokens) == (
        own["usage"]["prompt_tokens"], own["usage"]["completion_tokens"])
    answer = cascade.respond(Request(text="What is the capital of Italy?", want_audio=False))
    assert answer.usage is not None and answer.usage.input_tokens > 10
    assert answer.usage.output_tokens == chat_llm._count(answer.text) > 0
