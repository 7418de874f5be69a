"""Tools in realtime voice sessions over a real WebSocket: the session's tools, the streamed
call, the client's result and the spoken answer that uses it; a user speaking over a pending
call; and bad tools, results and ids answered on that session only."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import websockets

from ..conftest import say
from .test_realtime import AUTH, send_realtime, until

WEATHER = {"type": "function", "name": "get_weather",
           "description": "The current weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
TIMER = {"type": "function", "name": "set_timer", "description": "Start a countdown timer.",
         "parameters": {"type": "object", "properties": {"minutes": {"type": "number"}},
                        "required": ["minutes"]}}


def spoken(voice, text: str) -> bytes:
    audio = say(voice, text, pad=0.5).resample(16000)
    x = np.concatenate([audio.samples, np.zeros(24000, np.float32)])
    return (x * 32767).astype("<i2").tobytes()


async def _session(ws, tools=(WEATHER, TIMER)) -> dict:
    await ws.recv()  # session.created
    await ws.send(json.dumps({"type": "session.update", "session": {"tools": list(tools)}}))
    return json.loads(await ws.recv())


def test_spoken_question_call_result_and_spoken_answer(server, voice):
    async def run():
        async with websockets.connect(server.ws_url, additional_headers=AUTH) as ws:
            updated = await _session(ws)
            assert updated["session"]["tools"] == ["get_weather", "set_timer"]
            seen: list[dict] = []
            sender = asyncio.create_task(send_realtime(
                ws, spoken(voice, "What is the weather in Lisbon right now?"), speed=2.0))
            first = await until(ws, "response.done", seen)
            await sender
            done = next(m for m in seen if m["type"] == "response.function_call_arguments.done")
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": done["call_id"],
                "output": json.dumps({"temperature_c": 31, "sky": "sunny"})}}))
            created = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "response.create"}))
            after: list[dict] = []
            second = await until(ws, "response.done", after)
            return seen, first, done, created, after, second

    seen, first, done, created, after, second = asyncio.run(run())
    assert done["name"] == "get_weather" and "lisb" in json.loads(done["arguments"])["city"].lower()
    deltas = [m for m in seen if m["type"] == "response.function_call_arguments.delta"]
    assert deltas and all(d["call_id"] == done["call_id"] for d in deltas)
    assert json.loads("".join(d["delta"] for d in deltas)) == json.loads(done["arguments"])
    assert first["tool_calls"][0]["id"] == done["call_id"] and not first["text"]
    assert created["type"] == "conversation.item.created"
    assert "31" in second["text"] and not second["tool_calls"]
    assert any(m["type"] == "response.audio.delta" for m in after)  # spoken


def test_speaking_over_a_pending_call_closes_it_and_bad_input_keeps_the_session(server, voice):
    async def run():
        async with websockets.connect(server.ws_url, additional_headers=AUTH) as ws:
            await _session(ws)
            errors = []
            for bad in ({"tools": [{"type": "function", "name": "x y"}]},
                        {"tools": [{"type": "function", "name": "f",
                                    "parameters": {"type": "array"}}]},
                        {"tool_choice": {"type": "function", "name": "nope"}}):
                await ws.send(json.dumps({"type": "session.update", "session": bad}))
                errors.append(json.loads(await ws.recv()))
            seen: list[dict] = []
            sender = asyncio.create_task(send_realtime(
                ws, spoken(voice, "Set a timer for ten minutes."), speed=2.0))
            first = await until(ws, "response.done", seen)
            await sender
            call_id = first["tool_calls"][0]["id"]
            await ws.send(json.dumps({"type": "response.create"}))  # the result is missing
            errors.append(json.loads(await ws.recv()))
            # the tool never answers; the user asks something else
            sender = asyncio.create_task(send_realtime(
                ws, spoken(voice, "What is the capital of France?"), speed=2.0))
            second = await until(ws, "response.done", [])
            await sender
            late = {"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": call_id, "output": "{}"}}
            await ws.send(json.dumps(late))
            errors.append(json.loads(await ws.recv()))
            return errors, first, second

    errors, first, second = asyncio.run(run())
    assert all(e["type"] == "error" for e in errors)
    assert "x y" in errors[0]["message"] and "type object" in errors[1]["message"]
    assert "nope" in errors[2]["message"]
    assert first["tool_calls"][0]["function"]["name"] == "set_timer"
    assert "function_call_output" in errors[3]["message"]
    assert "paris" in second["text"].lower()  # the session went on past the pending call
    assert "not a pending call" in errors[4]["message"]
