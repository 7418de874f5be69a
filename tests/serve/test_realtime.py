"""Realtime voice sessions over a real WebSocket: a recorded question streamed as 16-bit PCM in
real time, server VAD, streamed answer, barge-in, push-to-talk, idle timeout, isolation of a
failing session, the key, and graceful shutdown."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import threading
import time
import urllib.request

import numpy as np
import pytest
import websockets

from speechllm.audio import Audio, load

from ..conftest import espeak, say
from .conftest import KEY, QUESTION, start_server, stop_server

AUTH = {"Authorization": f"Bearer {KEY}"}
CHUNK = 1600  # 100 ms at 16 kHz


def pcm16(seconds_before: float = 0.5, seconds_after: float = 2.0) -> bytes:
    q = load(QUESTION, 16000).samples
    x = np.concatenate([np.zeros(int(16000 * seconds_before), np.float32), q,
                        np.zeros(int(16000 * seconds_after), np.float32)])
    return (x * 32767).astype("<i2").tobytes()


async def send_realtime(ws, data: bytes, speed: float = 1.0) -> None:
    for i in range(0, len(data), CHUNK * 2):
        await ws.send(data[i:i + CHUNK * 2])
        await asyncio.sleep(0.1 / speed)


async def until(ws, kind: str, seen: list[dict], timeout: float = 300,
                key: str = "type") -> dict:
    """The first JSON message whose `key` is `kind`; every message read goes to `seen`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            raw = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
        except websockets.ConnectionClosed as exc:  # say what the session did before
            story = _story(seen)
            raise AssertionError(f"closed waiting for {kind}: {exc}; seen: {story}") from exc
        message = json.loads(raw)
        seen.append(message)
        if message[key] == kind:
            return message


def _story(seen: list[dict]) -> str:
    """The events in order, a run of deltas as one entry: to read a failure by."""
    lines: list[str] = []
    for m in seen:
        line = f'{m["type"]} {m.get("turn", "")} {m.get("reason", "")}'.strip()
        if "delta" in m["type"] and lines and lines[-1].startswith(m["type"]):
            continue
        lines.append(line)
    return " | ".join(lines)


def test_a_spoken_turn_streams_transcript_text_audio_and_timings(server):
    async def run():
        async with websockets.connect(server.ws_url, additional_headers=AUTH) as ws:
            created = json.loads(await ws.recv())
            assert created["type"] == "session.created"
            seen: list[dict] = []
            sender = asyncio.create_task(send_realtime(ws, pcm16(), speed=2.0))
            done = await until(ws, "response.done", seen)
            await sender
            return seen, done

    seen, done = asyncio.run(run())
    kinds = [m["type"] for m in seen]
    order = [kinds.index(k) for k in ("input_audio_buffer.speech_started",
                                      "input_audio_buffer.speech_stopped", "transcript",
                                      "response.text.delta", "response.audio.delta",
                                      "response.done")]
    assert order == sorted(order), kinds  # each arrives before the next stage's
    transcript = next(m for m in seen if m["type"] == "transcript")["text"]
    assert "capital of france" in transcript.lower()
    assert kinds.count("response.text.delta") > 2  # streamed, not sent whole
    text = "".join(m["delta"] for m in seen if m["type"] == "response.text.delta")
    assert "paris" in text.lower() and text.strip() == done["text"]
    audio = b"".join(base64.b64decode(m["delta"]) for m in seen
                     if m["type"] == "response.audio.delta")
    rate = next(m for m in seen if m["type"] == "response.audio.delta")["sample_rate"]
    assert len(audio) / 2 / rate > 0.8
    t = done["timings"]
    assert 0 < t["ttft"] <= t["ttfa"] <= t["total"]
    assert {s["name"] for s in t["spans"]} >= {"vad", "asr", "prefill", "decode", "tts"}
    # the answer was prepared during the pause that ended the turn, and the waterfall says so
    assert done["speculative"] is True and done["started_before_end"] > 0.2
    request = urllib.request.Request(server.url + "/health", headers=AUTH)
    with urllib.request.urlopen(request, timeout=10) as response:
        stages = json.loads(response.read())["voice_stage_seconds"]
    assert {"asr", "endpoint", "ttfa_after_speech"} <= stages.keys()
    assert 0 < stages["asr"]["p50"] <= stages["asr"]["p95"]


def test_a_pause_inside_a_question_gets_one_answer_to_the_whole_question(server, voice):
    """"Set a timer for ... ten minutes.": the 1.1 s pause is longer than the 0.9 s that ends
    a finished turn, but the transcript ends on a word no turn ends on, so the answer prepared
    during the pause is thrown away unseen and the whole request is answered once."""
    from speechllm.audio import Audio

    from ..conftest import say

    first = say(voice, "Set a timer for", pad=0.0)
    rest = say(voice, "ten minutes.", pad=0.0)
    x = Audio.concat([Audio.silence(0.5, first.sample_rate), first,
                      Audio.silence(1.1, first.sample_rate), rest,
                      Audio.silence(2.5, first.sample_rate)]).resample(16000).samples
    data = (x * 32767).astype("<i2").tobytes()

    async def run():
        async with websockets.connect(server.ws_url, additional_headers=AUTH) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "session.update", "session": {
                "want_audio": False, "max_tokens": 24}}))
            seen: list[dict] = []
            sender = asyncio.create_task(send_realtime(ws, data, speed=2.0))
            done = await until(ws, "response.done", seen)
            await sender
            await asyncio.sleep(1.0)  # anything else the server had to say
            with pytest.raises(TimeoutError):
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), 0.5)))
            return seen, done

    seen, done = asyncio.run(run())
    kinds = [m["type"] for m in seen]
    assert kinds.count("input_audio_buffer.speech_stopped") == 1, kinds
    assert kinds.count("transcript") == 1 and kinds.count("response.done") == 1, kinds
    assert "response.cancelled" not in kinds  # the fragment's answer was never shown
    assert "timer" in done["transcript"].lower() and "minutes" in done["transcript"].lower()
    assert done["turn"] == 1 and done["speculations_dropped"] >= 1


def test_barge_in_cancels_the_reply_and_the_next_turn_is_answered(server, voice):
    """Asked for a story, the assistant is interrupted mid-answer by a new question: the
    story is cancelled and the question is answered as turn 2. (The first request asks for
    something long, so the answer is surely still being written when the interruption is
    judged; a short answer may be over by then, and then there is nothing to cancel.)"""
    from speechllm.audio import Audio

    from ..conftest import say

    story = say(voice, "Tell me a long story about a brave little dragon.", pad=0.0)
    x = Audio.concat([Audio.silence(0.5, story.sample_rate), story,
                      Audio.silence(1.2, story.sample_rate)]).resample(16000).samples
    ask = (x * 32767).astype("<i2").tobytes()

    async def run():
        async with websockets.connect(server.ws_url, additional_headers=AUTH) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "session.update", "session": {
                "instructions": "Answer with a long, detailed story of at least ten "
                                "sentences.", "max_tokens": 120}}))
            seen: list[dict] = []
            sender = asyncio.create_task(send_realtime(ws, ask, speed=4.0))
            await until(ws, "response.text.delta", seen)  # the reply is under way
            await sender
            # the user talks over it
            talk = asyncio.create_task(send_realtime(ws, pcm16(0.0, 1.5), speed=4.0))
            cancelled = await until(ws, "response.cancelled", seen)
            done = await until(ws, "response.done", seen)
            await talk
            return seen, cancelled, done

    seen, cancelled, done = asyncio.run(run())
    assert cancelled["reason"] == "barge-in" and cancelled["turn"] == 1, " | ".join(
        f'{m["type"]} {m.get("turn")} {m.get("reason")}' for m in seen if "delta" not in m["type"])
    kinds = [m["type"] for m in seen]
    assert kinds.index("response.cancelled") > kinds.index("input_audio_buffer.speech_started",
                                                          kinds.index("response.text.delta"))
    assert done["turn"] == 2  # the first reply never finished; the interruption was answered
    assert "capital of france" in done["transcript"].lower()


STORY = {"type": "session.update", "session": {
    "instructions": "Answer with a long, detailed story of at least ten sentences.",
    "max_tokens": 60}}


def over_the_answer(server, probe: np.ndarray | None, echo: float) -> list[dict]:
    """A fresh session: `_over_the_answer` in it."""
    async def run():
        async with websockets.connect(server.ws_url, additional_headers=AUTH) as ws:
            await ws.recv()
            return await _over_the_answer(ws, probe, echo)

    return asyncio.run(run())


async def _over_the_answer(ws, probe: np.ndarray | None, echo: float) -> list[dict]:
    """Ask the question, then, while the answer plays (in real time, as a client plays it),
    send 1.5 s of nothing, `probe` (16 kHz) and 1.5 s of nothing, with `echo` times the
    answer's own audio mixed in as the microphone hears it; the events seen, up to then."""
    await ws.send(json.dumps(STORY))
    seen: list[dict] = []
    await send_realtime(ws, pcm16(0.5, 1.2), speed=2.0)
    first = await until(ws, "response.audio.delta", seen)
    playing = [first]
    mic = np.zeros(int(16000 * 1.0), np.float32) if probe is None else probe
    mic = np.concatenate([np.zeros(24000, np.float32), mic, np.zeros(24000, np.float32)])
    played = np.zeros(0, np.float32)
    for start in range(0, len(mic), CHUNK):
        while True:  # collect what arrived: the loudspeaker's queue
            try:
                m = json.loads(await asyncio.wait_for(ws.recv(), 0.001))
            except TimeoutError:
                break
            seen.append(m)
            if m["type"] == "response.audio.delta":
                playing.append(m)
            if m["type"] == "input_audio_buffer.speech_started":
                playing, played = [], np.zeros(0, np.float32)  # stop playback
        while len(played) < CHUNK and playing:
            m = playing.pop(0)
            pcm = np.frombuffer(base64.b64decode(m["delta"]), "<i2") / 32768.0
            played = np.concatenate([played, Audio(pcm.astype(np.float32), m["sample_rate"])
                                     .resample(16000).samples])
        chunk = mic[start:start + CHUNK].copy()
        echoed, played = played[:len(chunk)], played[len(chunk):]
        chunk[:len(echoed)] += echo * echoed
        await ws.send((np.clip(chunk, -1, 1) * 32767).astype("<i2").tobytes())
        await asyncio.sleep(0.1)
    with contextlib.suppress(TimeoutError):  # what the server still had to say about it
        while True:
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), 1.0)))
    return seen


def test_a_backchannel_over_the_answer_does_not_stop_it(server, voice):
    okay = say(voice, "Okay.", pad=0.0).resample(16000).samples

    seen = over_the_answer(server, okay, echo=0.0)
    kinds = [m["type"] for m in seen]
    ignored = [m for m in seen if m["type"] == "input_audio_buffer.speech_ignored"]
    assert [m["reason"] for m in ignored] == ["backchannel"], ignored
    assert "okay" in ignored[0]["transcript"].lower()
    assert "response.cancelled" not in kinds and kinds.count("transcript") == 1, kinds
    assert kinds.count("input_audio_buffer.speech_started") == 1  # the question's, only


def test_backchannels_in_two_breaths_are_each_judged_once(server, voice):
    """"Okay. ... Yeah, sure." over the answer: the first is judged at its pause, and the
    second on its own words, not on the first's again (every new look at words already
    judged is another chance for Whisper to mishear them); the answer goes on."""
    from speechllm.turn.barge_in import words

    first = say(voice, "Okay.", pad=0.0).resample(16000).samples
    second = say(voice, "Yeah, sure.", pad=0.0).resample(16000).samples
    probe = np.concatenate([first, np.zeros(8000, np.float32), second])

    seen = over_the_answer(server, probe, echo=0.0)
    kinds = [m["type"] for m in seen]
    ignored = [m for m in seen if m["type"] == "input_audio_buffer.speech_ignored"]
    assert [m["reason"] for m in ignored] == ["backchannel", "backchannel"], ignored
    assert "okay" in words(ignored[0]["transcript"]), ignored
    assert set(words(ignored[1]["transcript"])) <= {"yeah", "sure", "yes"}, ignored
    assert "response.cancelled" not in kinds and kinds.count("transcript") == 1, kinds


def test_the_answers_own_voice_in_the_microphone_does_not_stop_it(server):
    """No headphones: the answer comes back into the microphone 10 dB down. It is found in
    the answer's own audio, taken out of the stream, and never taken for the user."""
    seen = over_the_answer(server, None, echo=10 ** (-10 / 20))
    kinds = [m["type"] for m in seen]
    reasons = [m["reason"] for m in seen if m["type"] == "input_audio_buffer.speech_ignored"]
    assert reasons and set(reasons) == {"echo"}, reasons  # heard, and known for what it is
    assert "response.cancelled" not in kinds and kinds.count("transcript") == 1, kinds
    assert kinds.count("input_audio_buffer.speech_started") == 1


def test_an_interruption_over_the_echo_stops_the_answer(server, voice):
    """"Wait, stop." said over the answer's echo stops it, and is the user's next turn."""
    stop = say(voice, "Wait, stop.", pad=0.0).resample(16000).samples

    seen = over_the_answer(server, stop, echo=10 ** (-10 / 20))
    kinds = [m["type"] for m in seen]
    barge = [m for m in seen if m["type"] == "input_audio_buffer.speech_started"][1:]
    assert len(barge) == 1, barge
    assert "response.cancelled" in kinds[kinds.index("input_audio_buffer.speech_started", 1):]
    transcripts = [m["text"] for m in seen if m["type"] == "transcript"]
    assert len(transcripts) == 2 and "stop" in transcripts[1].lower(), transcripts


def test_a_follow_up_that_repeats_the_answers_first_words_stops_it(server, voice):
    """Headphones (no echo): once the answer's first clause has played, the user asks a short
    question made of its first three words and a new one ("The capital of Spain?" after "The
    capital of France is Paris."). Three of its four words are the answer's, but not of what
    was playing when it was said: an interruption, not the answer's echo."""
    import re

    from speechllm.turn.barge_in import words

    async def run():
        async with websockets.connect(server.ws_url, additional_headers=AUTH) as ws:
            await ws.recv()
            await ws.send(json.dumps(STORY))
            seen: list[dict] = []
            await send_realtime(ws, pcm16(0.5, 1.2), speed=2.0)
            first = await until(ws, "response.audio.delta", seen)
            began, opening, seconds = time.monotonic(), first["text"], 0.0
            message = first
            while message["type"] != "response.done" and message.get("text") in (None,
                                                                                  opening):
                if message["type"] == "response.audio.delta":
                    seconds += len(base64.b64decode(message["delta"])) / 2 / \
                        message["sample_rate"]
                message = json.loads(await asyncio.wait_for(ws.recv(), 120))
                seen.append(message)
            first_words = re.findall(r"[A-Za-z']+", opening)  # as written, for the voice
            assert len(first_words) >= 3, opening
            question = f"{' '.join(first_words[:3])} Spain?"
            probe = say(voice, question, pad=0.0).resample(16000).samples
            # silence until the first clause has played and its echo could be back
            lead = max(0.0, began + seconds + 2.5 - time.monotonic())
            mic = np.concatenate([np.zeros(int(16000 * lead), np.float32), probe,
                                  np.zeros(24000, np.float32)])
            await send_realtime(ws, (mic * 32767).astype("<i2").tobytes())
            # to the end of what it says about it (or the idle close that follows nothing)
            with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
                while True:
                    seen.append(json.loads(await asyncio.wait_for(ws.recv(), 3.0)))
            return question, seen

    question, seen = asyncio.run(run())
    kinds = [m["type"] for m in seen]
    ignored = [m for m in seen if m["type"] == "input_audio_buffer.speech_ignored"]
    assert not [m for m in ignored if m["reason"] == "echo"], (question, ignored)
    barge = [m for m in seen if m["type"] == "input_audio_buffer.speech_started"][1:]
    assert barge, (question, _story(seen))
    assert set(words(barge[0]["barge_in"])) & set(words(question)), (question, barge[0])
    # the interruption is the user's next turn (the answer had been written, so only its
    # playback stops: `speech_started` tells the client)
    assert kinds.count("transcript") == 2, _story(seen)


def test_push_to_talk_commit_and_protocol_errors_keep_the_session(server):
    async def run():
        async with websockets.connect(server.ws_url, additional_headers=AUTH) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "session.update", "session": {
                "turn_detection": "none", "input_sample_rate": 24000, "want_audio": False}}))
            updated = json.loads(await ws.recv())
            await ws.send("{not json")
            bad = json.loads(await ws.recv())
            await ws.send(b"\x01\x02\x03")  # odd byte count: not 16-bit PCM
            odd = json.loads(await ws.recv())
            q = load(QUESTION, 24000).samples
            await ws.send((q * 32767).astype("<i2").tobytes())
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            seen: list[dict] = []
            done = await until(ws, "response.done", seen)
            return updated, bad, odd, seen, done

    updated, bad, odd, seen, done = asyncio.run(run())
    assert updated["session"]["turn_detection"] == "none"
    assert bad["type"] == "error" and "JSON" in bad["message"]
    assert odd["type"] == "error" and "16-bit" in odd["message"]
    assert "capital of france" in done["transcript"].lower()  # 24 kHz input resampled
    assert not any(m["type"] == "response.audio.delta" for m in seen)  # want_audio false
    assert not any(m["type"].startswith("input_audio_buffer.speech") for m in seen)


def test_a_session_told_the_language_hears_a_question_whisper_would_mistake(server):
    """`session.update` with `language`: a one-second robotic English question that Whisper
    base's detection takes for Thai (p = 0.84 here) is heard in English; a malformed code is
    refused and the session goes on."""
    q = load(espeak("How many hours are in a day?"), 16000).samples
    x = np.concatenate([np.zeros(8000, np.float32), q, np.zeros(32000, np.float32)])

    async def run():
        async with websockets.connect(server.ws_url, additional_headers=AUTH) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "session.update", "session": {
                "language": "English"}}))
            refused = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "session.update", "session": {
                "turn_detection": "none", "want_audio": False, "language": "en",
                "max_tokens": 16}}))
            updated = json.loads(await ws.recv())
            await ws.send((x * 32767).astype("<i2").tobytes())
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            done = await until(ws, "response.done", [])
            return refused, updated, done

    refused, updated, done = asyncio.run(run())
    assert refused["type"] == "error" and "language" in refused["message"]
    assert updated["session"]["language"] == "en"
    assert "hours" in done["transcript"].lower() and done["transcript"].isascii(), done


def test_idle_sessions_close_and_wrong_keys_are_refused(server):
    async def run():
        async with websockets.connect(server.ws_url, additional_headers=AUTH) as ws:
            await ws.recv()
            start = time.monotonic()
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            return closed.value, time.monotonic() - start

    closed, waited = asyncio.run(run())
    assert closed.rcvd.code == 4408 and 5 < waited < 20  # the server was started with 6 s

    async def refused(headers):
        with pytest.raises(websockets.InvalidStatus) as e:
            async with websockets.connect(server.ws_url, additional_headers=headers):
                pass
        return e.value.response.status_code

    assert asyncio.run(refused({})) == 403
    assert asyncio.run(refused({"Authorization": "Bearer nope"})) == 403


def test_a_session_that_dies_mid_reply_does_not_hurt_another(server):
    async def run():
        # session A speaks and vanishes while its answer is being produced
        a = await websockets.connect(server.ws_url, additional_headers=AUTH)
        await a.recv()
        await send_realtime(a, pcm16(0.3, 1.2), speed=4.0)
        await until(a, "input_audio_buffer.speech_stopped", [])
        a.transport.abort()  # no close handshake: a dropped connection
        async with websockets.connect(server.ws_url, additional_headers=AUTH) as b:
            await b.recv()
            seen: list[dict] = []
            sender = asyncio.create_task(send_realtime(b, pcm16(), speed=2.0))
            done = await until(b, "response.done", seen)
            await sender
            return done

    done = asyncio.run(run())
    assert "paris" in done["text"].lower()
    with urllib.request.urlopen(urllib.request.Request(
            server.url + "/health", headers=AUTH), timeout=10) as r:
        assert json.loads(r.read())["status"] == "ok"


def test_shutdown_is_graceful(tmp_path):
    """SIGTERM while an answer is streaming: it is finished, then the server exits cleanly."""
    # a grace longer than any answer: on a loaded machine the default 30 s can cut this one
    s = start_server(tmp_path, "--shutdown-grace", "600", key=None)
    try:
        result: dict[str, object] = {}
        started = threading.Event()

        def ask() -> None:
            # streamed, so the test knows the request is being answered before it signals
            body = json.dumps({"messages": [{"role": "user", "content":
                               "Count from one to twenty in words."}], "max_tokens": 80,
                               "stream": True})
            request = urllib.request.Request(s.url + "/v1/chat/completions", body.encode(),
                                             {"Content-Type": "application/json"})
            text = []
            with urllib.request.urlopen(request, timeout=300) as r:
                result["status"] = r.status
                for line in r:
                    if not line.startswith(b"data:"):
                        continue
                    data = line.removeprefix(b"data:").strip()
                    if data == b"[DONE]":
                        result["done"] = True
                        continue
                    text.append(json.loads(data)["choices"][0]["delta"].get("content") or "")
                    started.set()
            result["text"] = "".join(text)

        async def voice_session_closed() -> int:
            async with websockets.connect(s.ws_url) as ws:
                await ws.recv()
                ready.set()
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        await ws.recv()
                return closed.value.rcvd.code

        ready = threading.Event()
        codes: list[int] = []
        voice = threading.Thread(target=lambda: codes.append(asyncio.run(
            voice_session_closed())))
        voice.start()
        assert ready.wait(30)
        worker = threading.Thread(target=ask)
        worker.start()
        assert started.wait(300)  # the answer is streaming
        s.process.send_signal(signal.SIGTERM)
        worker.join(300)
        voice.join(60)
        assert result.get("status") == 200 and result.get("done"), result
        assert "twenty" in str(result["text"]).lower()  # answered to the end
        assert codes == [1012]  # the open voice session is told the service restarts
        assert s.process.wait(60) == 0
        log = s.log.read_text()
        assert "Finished server process" in log and "Traceback" not in log
    finally:
        stop_server(s)


def test_semantic_vad_auto_after_high_returns_to_the_server_defaults(server):
    """Eagerness `high` shortens the silence that ends a turn; a later `auto` (or `medium`)
    means the server's own timing again, not whatever the session asked for before."""
    async def run():
        async with websockets.connect(server.ws_url, additional_headers=AUTH) as ws:
            created = json.loads(await ws.recv())
            updates = []
            for eagerness in ("high", "auto", "low", "medium"):
                await ws.send(json.dumps({"type": "session.update", "session": {
                    "turn_detection": {"type": "semantic_vad", "eagerness": eagerness}}}))
                updates.append(json.loads(await ws.recv()))
            return created, updates

    created, (high, auto, low, medium) = asyncio.run(run())
    own = created["session"]["vad"]
    assert high["session"]["vad"]["silence_duration_ms"] < own["silence_duration_ms"]
    assert low["session"]["vad"]["silence_duration_ms"] > own["silence_duration_ms"]
    assert auto["session"]["vad"] == own and medium["session"]["vad"] == own
