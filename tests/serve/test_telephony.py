"""Phone calls over a real WebSocket: a simulated Twilio Media Streams client streams recorded
speech as 8 kHz mu-law at real-time pace and hears the spoken answer (transcribed back), gets
`clear` when it talks over the answer, and keeps its call through garbage; the raw G.711
route with A-law; the G.711 codec against Python's reference implementation."""

from __future__ import annotations

import asyncio
import base64
import json
import warnings

import numpy as np
import pytest
import websockets

from speechllm.asr.base import ASROptions
from speechllm.audio import Audio, load
from speechllm.serve import g711

from .conftest import KEY, QUESTION
from .test_realtime import until

CHUNK = 160  # 20 ms of 8 kHz G.711, as Twilio sends it


def phone_audio(seconds_before: float = 0.5, seconds_after: float = 2.0,
                law: g711.Law = "mulaw") -> bytes:
    q = load(QUESTION, 8000).samples
    x = np.concatenate([np.zeros(int(8000 * seconds_before), np.float32), q,
                        np.zeros(int(8000 * seconds_after), np.float32)])
    return g711.encode(np.round(x * 32767).astype(np.int16), law)


def twilio_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/telephony/twilio"


async def start_call(ws, key: str = KEY) -> None:
    await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    await ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "start": {
        "streamSid": "MZ123", "accountSid": "AC1", "callSid": "CA1", "tracks": ["inbound"],
        "customParameters": {"api_key": key},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))


async def stream(ws, data: bytes, speed: float = 1.0) -> None:
    """Media events every 20 ms of audio, at `speed` times real time."""
    for n, i in enumerate(range(0, len(data), CHUNK)):
        await ws.send(json.dumps({"event": "media", "streamSid": "MZ123", "media": {
            "track": "inbound", "chunk": str(n + 1), "timestamp": str(n * 20),
            "payload": base64.b64encode(data[i:i + CHUNK]).decode()}}))
        await asyncio.sleep(0.02 / speed)


async def until_event(ws, kind: str, seen: list[dict], timeout: float = 120) -> dict:
    return await until(ws, kind, seen, timeout, key="event")  # Twilio names it "event"


def heard(asr, payloads: list[str]) -> str:
    audio = g711.decode(b"".join(base64.b64decode(p) for p in payloads))
    return asr.transcribe(Audio(audio.astype(np.float32) / 32768.0, 8000).resample(16000),
                          ASROptions(language="en")).text.lower()


def test_a_call_is_answered_in_speech_and_cleared_on_barge_in(server, asr):
    async def run():
        async with websockets.connect(twilio_url(server)) as ws:
            await start_call(ws)
            seen: list[dict] = []
            await stream(ws, phone_audio())  # real time, as a call sends it
            mark = await until_event(ws, "mark", seen)
            first = [m["media"]["payload"] for m in seen if m["event"] == "media"]
            # the second answer: talk over it as soon as it starts
            sender = asyncio.create_task(stream(ws, phone_audio(0.2, 1.0)))
            await sender
            await until_event(ws, "media", seen)
            over = asyncio.create_task(stream(ws, phone_audio(0.0, 1.5)))
            cleared = await until_event(ws, "clear", seen)
            await over
            return mark, first, cleared, seen

    mark, first, cleared, seen = asyncio.run(run())
    assert all(m["streamSid"] == "MZ123" for m in seen)
    assert mark["mark"]["name"].startswith("answer-")
    assert "paris" in heard(asr, first)  # the spoken answer, through the phone codec
    assert cleared["event"] == "clear"


def test_a_wrong_key_is_refused_and_garbage_does_not_end_the_call(server, asr):
    async def refused():
        async with websockets.connect(twilio_url(server)) as ws:
            await start_call(ws, key="wrong")
            with pytest.raises(websockets.ConnectionClosed) as caught:
                await ws.recv()
            return caught.value.rcvd.code

    assert asyncio.run(refused()) == 4401

    async def garbage():
        async with websockets.connect(twilio_url(server)) as ws:
            await start_call(ws)
            for junk in ("not json", json.dumps({"event": "dance"}), json.dumps([1, 2]),
                         json.dumps({"event": "media", "media": {"payload": "%%%"}}),
                         json.dumps({"event": "media"})):
                await ws.send(junk)
            await ws.send(b"\x00\x01binary")
            seen: list[dict] = []
            await stream(ws, phone_audio(), speed=2.0)
            await until_event(ws, "mark", seen)
            return [m["media"]["payload"] for m in seen if m["event"] == "media"]

    assert "paris" in heard(asr, asyncio.run(garbage()))


def test_raw_g711_route_with_a_law(server):
    async def run():
        url = server.url.replace("http://", "ws://") + \
            f"/v1/telephony/g711?codec=alaw&api_key={KEY}"
        async with websockets.connect(url) as ws:
            data = phone_audio(law="alaw")
            frames: list[bytes] = []
            done = None

            async def send() -> None:
                for i in range(0, len(data), 800):
                    await ws.send(data[i:i + 800])
                    await asyncio.sleep(0.05)

            sender = asyncio.create_task(send())
            while done is None:
                message = await asyncio.wait_for(ws.recv(), 120)
                if isinstance(message, bytes):
                    frames.append(message)
                elif json.loads(message)["type"] == "response.done":
                    done = json.loads(message)
            await sender
            return frames, done

    frames, done = asyncio.run(run())
    assert "capital of france" in done["transcript"].lower() and "paris" in done["text"].lower()
    spoken = g711.decode(b"".join(frames), "alaw")
    assert len(spoken) / 8000 > 0.5 and np.abs(spoken).max() > 1000  # audible speech


def test_g711_matches_the_reference_codec():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # the reference (Python 3.11 still has it)
    x = np.arange(-32768, 32768, dtype=np.int16)
    every = bytes(range(256))
    for law, encode, decode in (("mulaw", audioop.lin2ulaw, audioop.ulaw2lin),
                                ("alaw", audioop.lin2alaw, audioop.alaw2lin)):
        assert g711.encode(x, law) == encode(x.tobytes(), 2)
        assert np.array_equal(g711.decode(every, law),
                              np.frombuffer(decode(every, 2), np.int16))


def test_out_of_order_wrong_format_huge_and_idle_streams_end_cleanly(server):
    async def closed_with(first: list[dict]) -> int:
        async with websockets.connect(twilio_url(server)) as ws:
            for event in first:
                await ws.send(json.dumps(event))
            with pytest.raises(websockets.ConnectionClosed) as caught:
                while True:
                    await asyncio.wait_for(ws.recv(), 30)
            return caught.value.rcvd.code

    media = {"event": "media", "media": {"payload": base64.b64encode(b"\xff" * 160).decode()}}
    assert asyncio.run(closed_with([media])) == 4400  # media before start
    wide = {"event": "start", "start": {"streamSid": "MZ9", "customParameters": {
        "api_key": KEY}, "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 16000}}}
    assert asyncio.run(closed_with([wide])) == 4400  # not 8 kHz mu-law

    async def huge_then_idle() -> int:
        async with websockets.connect(twilio_url(server)) as ws:
            await start_call(ws)
            big = base64.b64encode(b"\xff" * 8000 * 12).decode()  # 12 s in one message
            await ws.send(json.dumps({"event": "media", "media": {"payload": big}}))
            # then nothing: the server's idle time-out (6 s here) ends the call
            with pytest.raises(websockets.ConnectionClosed) as caught:
                while True:
                    await asyncio.wait_for(ws.recv(), 30)
            return caught.value.rcvd.code

    assert asyncio.run(huge_then_idle()) == 4408


def test_raw_g711_refuses_a_frame_over_the_cap_and_goes_on(server):
    async def run():
        url = server.url.replace("http://", "ws://") + \
            f"/v1/telephony/g711?codec=mulaw&api_key={KEY}"
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            await ws.send(b"\xff" * 8000 * 12)  # 12 s in one frame
            error = json.loads(await ws.recv())
            data = phone_audio()
            for i in range(0, len(data), 1600):
                await ws.send(data[i:i + 1600])
            while True:
                message = await asyncio.wait_for(ws.recv(), 120)
                if isinstance(message, str) and json.loads(message)["type"] == "response.done":
                    return error, json.loads(message)

    error, done = asyncio.run(run())
    assert error["type"] == "error" and "at most" in error["message"]
    assert "capital of france" in done["transcript"].lower()
