"""The OpenAI Realtime protocol on /v1/realtime: the official `openai` client (only its base
URL changed) holds a spoken conversation; a raw session with the beta field names, G.711
audio, push-to-talk, a typed message and bad events; tools through the protocol."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import openai
import pytest
import websockets

from speechllm.asr.base import ASROptions
from speechllm.audio import Audio, load
from speechllm.serve import g711

from .conftest import KEY, QUESTION
from .test_realtime import until


def question(rate: int, before: float = 0.5, after: float = 1.5) -> np.ndarray:
    q = load(QUESTION, rate).samples
    return np.concatenate([np.zeros(int(rate * before), np.float32), q,
                           np.zeros(int(rate * after), np.float32)])


def pcm16(x: np.ndarray) -> bytes:
    return np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes()


def test_the_official_client_holds_a_spoken_conversation(server, asr):
    async def run():
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=KEY)
        async with client.realtime.connect(model="speechllm") as conn:
            await conn.session.update(session={
                "type": "realtime", "output_modalities": ["audio"],
                "instructions": "You are a helpful voice assistant. Answer in one sentence.",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                    "turn_detection": {"type": "server_vad"}},
                          "output": {"format": {"type": "audio/pcm", "rate": 24000},
                                     "voice": "alloy"}}})
            data = pcm16(question(24000))

            async def send() -> None:
                for i in range(0, len(data), 4800):  # 100 ms, at twice real time
                    await conn.input_audio_buffer.append(
                        audio=base64.b64encode(data[i:i + 4800]).decode())
                    await asyncio.sleep(0.05)

            sender = asyncio.create_task(send())
            events = []
            async for event in conn:
                events.append(event)
                if event.type == "response.done":
                    break
            await sender
        return events

    events = asyncio.run(run())
    kinds = [e.type for e in events]
    for kind in ("session.created", "session.updated", "input_audio_buffer.speech_started",
                 "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
                 "conversation.item.input_audio_transcription.completed", "response.created",
                 "response.output_item.added", "response.content_part.added",
                 "response.output_audio_transcript.delta", "response.output_audio.delta",
                 "response.output_audio.done", "response.output_audio_transcript.done",
                 "response.content_part.done", "response.output_item.done", "response.done"):
        assert kind in kinds, (kind, kinds)
    assert kinds.index("response.created") < kinds.index("response.output_audio.delta") < \
        kinds.index("response.done")
    heard = next(e for e in events
                 if e.type == "conversation.item.input_audio_transcription.completed")
    assert "capital of france" in heard.transcript.lower()
    said = next(e for e in events if e.type == "response.output_audio_transcript.done")
    assert "paris" in said.transcript.lower()
    done = events[-1]
    assert done.response.status == "completed" and done.response.output[0].type == "message"
    used = done.response.usage  # the LLM's text tokens: the prompt in, the answer out
    assert used.input_tokens > 10 and used.output_tokens > 3
    assert used.total_tokens == used.input_tokens + used.output_tokens
    audio = b"".join(base64.b64decode(e.delta) for e in events
                     if e.type == "response.output_audio.delta")
    speech = Audio(np.frombuffer(audio, "<i2").astype(np.float32) / 32768.0, 24000)
    assert "paris" in asr.transcribe(speech.resample(16000), ASROptions(language="en")
                                     ).text.lower()


def _first(events: list[dict], kind: str) -> dict:
    return next(e for e in events if e["type"] == kind)


async def _collect(ws, kind: str, timeout: float = 120) -> list[dict]:
    seen: list[dict] = []
    await until(ws, kind, seen, timeout)
    return seen


def test_a_raw_session_with_beta_names_g711_typing_tools_and_bad_events(server, asr):
    url = server.url.replace("http://", "ws://") + "/v1/realtime?model=speechllm"
    weather = {"type": "function", "name": "get_weather",
               "description": "The current weather in a city.",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                              "required": ["city"]}}

    async def run():
        async with websockets.connect(url, additional_headers={
                "Authorization": f"Bearer {KEY}", "OpenAI-Beta": "realtime=v1"}) as ws:
            created = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "session.update", "session": {
                "modalities": ["text", "audio"], "input_audio_format": "g711_ulaw",
                "output_audio_format": "g711_ulaw", "turn_detection": None}}))
            updated = json.loads(await ws.recv())
            bad = []
            for junk in ("not json", json.dumps({"type": "dance"}), b"\x00\x01",
                         json.dumps({"type": "input_audio_buffer.append", "audio": "%%"}),
                         json.dumps({"type": "session.update", "session": {
                             "input_audio_format": "mp3"}})):
                await ws.send(junk)
                bad.append(json.loads(await ws.recv()))
            # push-to-talk: append mu-law, commit, response.create (as OpenAI clients do)
            law = g711.encode((question(8000) * 32767).astype(np.int16))
            for i in range(0, len(law), 800):
                await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": base64.b64encode(law[i:i + 800]).decode()}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await ws.send(json.dumps({"type": "response.create"}))
            spoken = await _collect(ws, "response.done")
            # a typed message, then a tool round
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "What is the capital of Italy?"}]}}))
            await ws.send(json.dumps({"type": "response.create"}))
            typed = await _collect(ws, "response.done")
            await ws.send(json.dumps({"type": "session.update", "session": {
                "tools": [weather], "tool_choice": {"type": "function", "name": "get_weather"}}}))
            with_tools = (await _collect(ws, "session.updated"))[-1]
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "What's the weather in Oslo?"}]}}))
            await ws.send(json.dumps({"type": "response.create"}))
            called = await _collect(ws, "response.done")
            call = _first(called, "response.function_call_arguments.done")
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": call["call_id"],
                "output": json.dumps({"temperature_c": 7, "sky": "snow"})}}))
            await ws.send(json.dumps({"type": "response.create"}))
            answered = await _collect(ws, "response.done")
            return created, updated, bad, spoken, typed, with_tools, call, called, answered

    created, updated, bad, spoken, typed, with_tools, call, called, answered = asyncio.run(run())
    assert created["type"] == "session.created" and created["event_id"]
    assert updated["session"]["audio"]["input"]["format"]["type"] == "audio/pcmu"
    assert all(e["type"] == "error" for e in bad) and "mp3" in bad[-1]["error"]["message"]
    kinds = [e["type"] for e in spoken]
    assert "input_audio_buffer.committed" in kinds and kinds.count("response.created") == 1
    heard = _first(spoken, "conversation.item.input_audio_transcription.completed")
    assert "capital of france" in heard["transcript"].lower()
    law = b"".join(base64.b64decode(e["delta"]) for e in spoken
                   if e["type"] == "response.output_audio.delta")
    speech = Audio(g711.decode(law).astype(np.float32) / 32768.0, 8000).resample(16000)
    assert "paris" in asr.transcribe(speech, ASROptions(language="en")).text.lower()
    said = _first(typed, "response.output_audio_transcript.done")
    assert "rome" in said["transcript"].lower()
    assert with_tools["session"]["tools"][0]["name"] == "get_weather"
    assert call["name"] == "get_weather" and "oslo" in call["arguments"].lower()
    assert called[-1]["response"]["output"][0]["type"] == "function_call"
    said = _first(answered, "response.output_audio_transcript.done")
    assert "snow" in said["transcript"].lower()  # the answer uses the tool's result


def test_vad_settings_apply_silence_and_create_response(server):
    """A 400 ms silence ends a turn the server's default (900 ms) would leave open, and with
    create_response false the turn waits for the client's response.create."""
    url = server.url.replace("http://", "ws://") + "/v1/realtime?model=speechllm"
    detection = {"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 400,
                 "prefix_padding_ms": 200, "create_response": False}

    async def run():
        async with websockets.connect(url, additional_headers={
                "Authorization": f"Bearer {KEY}"}) as ws:
            await ws.recv()  # session.created
            errors = []
            for bad in ({"threshold": 1.5}, {"silence_duration_ms": "long"},
                        {"type": "semantic_vad", "eagerness": "eager"}, {"type": "clap"}):
                await ws.send(json.dumps({"type": "session.update", "session": {
                    "audio": {"input": {"turn_detection": bad}}}}))
                errors.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "session.update", "session": {
                "output_modalities": ["text"],
                "audio": {"input": {"turn_detection": detection}}}}))
            updated = json.loads(await ws.recv())
            q = question(24000, after=0.0)
            last = np.nonzero(np.abs(q) > 0.01)[0][-1]
            data = pcm16(q[:last + int(0.65 * 24000)])  # 0.65 s of silence, then nothing
            for i in range(0, len(data), 4800):
                await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": base64.b64encode(data[i:i + 4800]).decode()}))
            heard = await _collect(ws, "input_audio_buffer.speech_stopped", 20)
            await ws.send(json.dumps({"type": "response.create"}))
            answered = await _collect(ws, "response.done")
            return errors, updated, heard, answered

    errors, updated, heard, answered = asyncio.run(run())
    assert [e["type"] for e in errors] == ["error"] * 4
    assert "threshold" in errors[0]["error"]["message"]
    assert "silence_duration_ms" in errors[1]["error"]["message"]
    assert "eagerness" in errors[2]["error"]["message"]
    applied = updated["session"]["audio"]["input"]["turn_detection"]
    assert applied == {**detection, "interrupt_response": True}
    assert "response.created" not in [e["type"] for e in heard]
    kinds = [e["type"] for e in answered]
    assert "error" not in kinds and kinds.count("response.created") == 1
    transcript = _first(answered, "conversation.item.input_audio_transcription.completed")
    assert "capital of france" in transcript["transcript"].lower()
    said = _first(answered, "response.output_text.done")
    assert "paris" in said["text"].lower()


def test_a_session_update_with_every_documented_field_is_accepted(server):
    """What a full-featured client sends (every field of OpenAI's GA session.update): no
    error; what the server applies is reported back, the rest is left out or as it is."""
    url = server.url.replace("http://", "ws://") + "/v1/realtime?model=speechllm"
    update = {"type": "session.update", "event_id": "evt_full", "session": {
        "type": "realtime", "model": "gpt-realtime", "output_modalities": ["audio"],
        "instructions": "Be brief.", "max_output_tokens": "inf", "tool_choice": "auto",
        "tools": [], "tracing": "auto", "truncation": "auto", "prompt": None,
        "include": ["item.input_audio_transcription.logprobs"],
        "audio": {
            "input": {"format": {"type": "audio/pcmu"},
                      "noise_reduction": {"type": "near_field"},
                      "transcription": {"model": "whisper-1", "language": "en",
                                        "prompt": "capitals"},
                      "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                         "prefix_padding_ms": 300,
                                         "silence_duration_ms": 500,
                                         "idle_timeout_ms": None, "create_response": True,
                                         "interrupt_response": True}},
            "output": {"format": {"type": "audio/pcmu"}, "voice": "marin", "speed": 1.0}}}}

    async def run():
        async with websockets.connect(url, additional_headers={
                "Authorization": f"Bearer {KEY}"}) as ws:
            await ws.recv()  # session.created
            await ws.send(json.dumps(update))
            return json.loads(await ws.recv())

    updated = asyncio.run(run())
    assert updated["type"] == "session.updated", updated
    session = updated["session"]
    assert session["instructions"] == "Be brief."
    assert session["audio"]["input"]["format"]["type"] == "audio/pcmu"
    assert session["audio"]["output"]["format"]["type"] == "audio/pcmu"
    assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500


def test_a_recorded_javascript_client_session_replays(server):
    """The events OpenAI's JavaScript client sent in a recorded session (fixture), sent again
    as they were: the server answers with the same events, in the same order (deltas aside,
    whose interleaving depends on timing)."""
    from ..conftest import ROOT

    recorded = json.loads((ROOT / "tests" / "fixtures" / "openai_realtime" /
                           "js_client_session.json").read_text())
    pcm = load(QUESTION, 24000).to_pcm16()
    url = server.url.replace("http://", "ws://") + "/v1/realtime?model=speechllm"

    def as_sent(event: dict) -> str:
        audio = event.get("audio")
        if isinstance(audio, dict):
            start, end = audio.get("$question_24k_pcm16", (0, 0))
            data = pcm[start:end] if "$question_24k_pcm16" in audio else \
                bytes(audio["$silence_bytes"])
            event = {**event, "audio": base64.b64encode(data).decode()}
        return json.dumps(event, separators=(",", ":"))  # as JSON.stringify writes it

    async def run():
        async with websockets.connect(url, additional_headers={
                "Authorization": f"Bearer {KEY}"}) as ws:
            seen: list[dict] = [json.loads(await ws.recv())]

            async def send() -> None:
                for event in recorded["client_events"]:
                    await ws.send(as_sent(event))
                    await asyncio.sleep(0.05)  # the recording's 100 ms, at twice the pace

            sender = asyncio.create_task(send())
            await until(ws, "response.done", seen, 120)
            await sender
            return seen

    seen = asyncio.run(run())

    def steps(types: list[str]) -> list[str]:
        return [t for t in types if not t.endswith(".delta")]

    assert steps([e["type"] for e in seen]) == steps(recorded["server_event_types"])
    assert {e["type"] for e in seen} == set(recorded["server_event_types"])
    heard = _first(seen, "conversation.item.input_audio_transcription.completed")
    assert "capital of france" in heard["transcript"].lower()
    said = _first(seen, "response.output_audio_transcript.done")
    assert "paris" in said["transcript"].lower()


def test_a_browser_client_authenticates_with_the_key_subprotocol(server):
    url = server.url.replace("http://", "ws://") + "/v1/realtime?model=speechllm"

    async def run(key: str):
        async with websockets.connect(url, subprotocols=[
                "realtime", f"openai-insecure-api-key.{key}"]) as ws:
            return ws.subprotocol, json.loads(await ws.recv())["type"]

    assert asyncio.run(run(KEY)) == ("realtime", "session.created")
    try:
        asyncio.run(run("wrong"))
        refused = False
    except websockets.InvalidStatus as exc:  # closed before the handshake: HTTP 403
        refused = exc.response.status_code == 403
    assert refused


def test_out_of_order_and_oversized_events_get_errors_and_idle_sessions_close(server):
    url = server.url.replace("http://", "ws://") + "/v1/realtime?model=speechllm"

    async def run():
        async with websockets.connect(url, additional_headers={
                "Authorization": f"Bearer {KEY}"}) as ws:
            await ws.recv()  # session.created
            errors = []
            for event in (
                    {"type": "conversation.item.create", "item": {
                        "type": "function_call_output", "call_id": "call_nope", "output": "{}"}},
                    {"type": "response.create"},  # nothing to answer yet
                    {"type": "input_audio_buffer.append",  # 11 s in one event
                     "audio": base64.b64encode(b"\0" * 24000 * 2 * 11).decode()}):
                await ws.send(json.dumps(event))
                errors.append(json.loads(await ws.recv()))
            with pytest.raises(websockets.ConnectionClosed) as caught:
                while True:  # then silence: the idle time-out (6 s here) closes it
                    await asyncio.wait_for(ws.recv(), 30)
            return errors, caught.value.rcvd.code

    errors, code = asyncio.run(run())
    assert [e["type"] for e in errors] == ["error"] * 3
    assert "call_nope" in errors[0]["error"]["message"]
    assert "response.create" in errors[1]["error"]["message"]
    assert "at most" in errors[2]["error"]["message"]
    assert code == 4408


def test_over_tls_for_clients_that_require_wss(tmp_path):
    """OpenAI's JavaScript client (and Twilio) connect only over wss://: `serve
    --ssl-certfile/--ssl-keyfile` serves https and wss. The official Python client, told to
    trust a test CA, holds a typed turn over it."""
    import ssl

    import trustme

    from ..test_cli import run
    from .conftest import start_server, stop_server

    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    half = run("serve", "--ssl-certfile", str(cert))
    assert half.returncode == 2 and "--ssl-keyfile" in half.stderr

    s = start_server(tmp_path, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
                     tls=trust)

    async def turn():
        client = openai.AsyncOpenAI(base_url=s.url + "/v1", api_key=KEY)
        async with client.realtime.connect(
                model="speechllm", websocket_connection_options={"ssl": trust}) as conn:
            await conn.session.update(session={"type": "realtime",
                                               "output_modalities": ["text"]})
            await conn.conversation.item.create(item={
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "What is the capital of France?"}]})
            await conn.response.create()
            async for event in conn:
                if event.type == "response.output_text.done":
                    return event.text
        return ""

    try:
        assert s.url.startswith("https://")
        assert "paris" in asyncio.run(turn()).lower()
    finally:
        stop_server(s)


def _push_to_talk_question(server, transcription: dict | None) -> tuple[dict, list[dict]]:
    """A text-only push-to-talk session with `audio.input.transcription` set as given, asked
    the recorded question: its session.updated and the events up to response.done."""
    url = server.url.replace("http://", "ws://") + "/v1/realtime?model=speechllm"

    async def run():
        async with websockets.connect(url, additional_headers={
                "Authorization": f"Bearer {KEY}"}) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "output_modalities": ["text"], "max_output_tokens": 16,
                "audio": {"input": {"transcription": transcription, "turn_detection": None}}}}))
            updated = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(pcm16(question(24000)))
                                      .decode()}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await ws.send(json.dumps({"type": "response.create"}))
            return updated, await _collect(ws, "response.done")

    return asyncio.run(run())


def test_transcription_null_sends_no_transcription_events(server):
    """`audio.input.transcription: null` turns the user's transcript events off (the
    question is still heard and answered), and the session reports it off."""
    updated, seen = _push_to_talk_question(server, None)
    assert updated["session"]["audio"]["input"]["transcription"] is None
    kinds = [e["type"] for e in seen]
    assert "response.output_text.done" in kinds, kinds  # heard and answered
    assert not any("input_audio_transcription" in k for k in kinds), kinds
    assert "paris" in _first(seen, "response.output_text.done")["text"].lower()


def test_transcription_language_reaches_the_recogniser(server):
    """`audio.input.transcription.language` is what the recogniser is told: told French,
    Whisper writes the recorded English question in French (detecting, it writes English)."""
    _, seen = _push_to_talk_question(server, {"model": "whisper-1", "language": "fr"})
    heard = _first(seen, "conversation.item.input_audio_transcription.completed")["transcript"]
    assert "capitale" in heard.lower() and "what is" not in heard.lower(), heard
