"""Tool calling on /v1/chat/completions with the official `openai` client (only base_url
changed) against a live `speechllm serve` with the embedded models: a spoken question, the
model's call, the client's result, and a spoken answer that uses it."""

from __future__ import annotations

import base64
import io
import json

import openai
import pytest
import soundfile as sf

from tests.conftest import say

from .conftest import KEY

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "the city's name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}
TIMER = {"type": "function", "function": {
    "name": "set_timer", "description": "Start a countdown timer.",
    "parameters": {"type": "object", "properties": {
        "minutes": {"type": "number"}, "label": {"type": "string"}},
        "required": ["minutes"]}}}
TOOLS = [WEATHER, TIMER]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=300)


def _wav_b64(audio) -> str:
    buf = io.BytesIO()
    sf.write(buf, audio.samples, audio.sample_rate, format="WAV")
    return base64.b64encode(buf.getvalue()).decode()


def test_spoken_question_tool_call_result_and_spoken_answer(client, voice):
    question = say(voice, "What is the weather like in Lisbon right now?")
    messages: list = [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": _wav_b64(question), "format": "wav"}}]}]
    first = client.chat.completions.create(model="speechllm", messages=messages, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1 and calls[0].function.name == "get_weather"
    args = json.loads(calls[0].function.arguments)
    assert "lisbon" in args["city"].lower() or "lisboa" in args["city"].lower()
    assert calls[0].id.startswith("call_")

    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": calls[0].id,
                  "content": json.dumps({"temperature_c": 31, "sky": "sunny"})}]
    second = client.chat.completions.create(
        model="speechllm", messages=messages, tools=TOOLS, modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"})
    answer = second.choices[0].message
    assert second.choices[0].finish_reason == "stop" and not answer.tool_calls
    assert "31" in answer.audio.transcript  # the answer uses the tool's result
    spoken, rate = sf.read(io.BytesIO(base64.b64decode(answer.audio.data)))
    assert len(spoken) / rate > 0.5


def test_streamed_tool_call_as_openai_streams_it(client):
    stream = client.chat.completions.create(
        model="speechllm", stream=True, tools=TOOLS,
        messages=[{"role": "user", "content": "Set a timer for ten minutes, please."}])
    pieces, finish = [], None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        pieces += delta.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    head = pieces[0]
    assert head.index == 0 and head.id.startswith("call_") and head.type == "function"
    assert head.function.name == "set_timer"
    assert all(p.id is None and p.function.name is None for p in pieces[1:])
    assert len(pieces) > 2  # the arguments came piece by piece, not in one lump
    arguments = json.loads("".join(p.function.arguments or "" for p in pieces))
    assert arguments["minutes"] == 10


def test_tool_choice_none_required_and_named(client):
    ask = [{"role": "user", "content": "What is the capital of France?"}]
    plain = client.chat.completions.create(model="speechllm", messages=ask, tools=TOOLS,
                                           tool_choice="none")
    assert not plain.choices[0].message.tool_calls
    assert "paris" in plain.choices[0].message.content.lower()
    named = client.chat.completions.create(
        model="speechllm", messages=ask, tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = named.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert "paris" in json.loads(call.function.arguments)["city"].lower()
    required = client.chat.completions.create(model="speechllm", messages=ask, tools=TOOLS,
                                              tool_choice="required")
    assert required.choices[0].message.tool_calls


@pytest.mark.parametrize("tools, choice, param", [
    ([{"type": "function", "function": {"name": "bad name!"}}], None, "tools"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}],
     None, "tools"),
    ([{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "integr"}}}}}], None, "tools"),
    (TOOLS, {"type": "function", "function": {"name": "launch_rocket"}}, "tool_choice"),
    ([], "required", "tool_choice"),
])
def test_malformed_tools_are_a_400_naming_the_field(client, tools, choice, param):
    extra = {"tool_choice": choice} if choice is not None else {}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="speechllm", tools=tools, **extra,
                                       messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["param"] == param


def test_tool_results_that_are_huge_or_not_json_still_get_an_answer(client):
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    for output in ("sunny, 12 degrees <not json>", "x" * 200_000):
        reply = client.chat.completions.create(model="speechllm", tools=TOOLS, messages=[
            {"role": "user", "content": "What is the weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": output}])
        assert reply.choices[0].message.content or reply.choices[0].message.tool_calls
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="speechllm", tools=TOOLS, messages=[
            {"role": "user", "content": "weather?"}, {"role": "tool", "content": "{}"}])
    assert "tool_call_id" in caught.value.body["message"]
