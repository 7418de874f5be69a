"""The official `openai` client against a live `speechllm serve`, changing only base_url: every
route and format, then the protection (API key, caps, bad input) and concurrency."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import urllib.error
import urllib.request

import numpy as np
import openai
import pytest
import soundfile as sf

from speechllm.audio import Audio, load

from ..conftest import espeak
from .conftest import KEY, QUESTION


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=300)


def _times(srt_or_vtt: str) -> list[float]:
    stamps = re.findall(r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)", srt_or_vtt)
    return [int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in stamps]


def test_transcriptions_in_every_format(client):
    duration = load(QUESTION).duration
    with QUESTION.open("rb") as f:
        plain = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert "capital of france" in plain.text.lower()
    with QUESTION.open("rb") as f:
        text = client.audio.transcriptions.create(model="whisper-1", file=f,
                                                  response_format="text")
    assert isinstance(text, str) and "capital of france" in text.lower()
    for fmt, head in (("srt", "1\n"), ("vtt", "WEBVTT")):
        with QUESTION.open("rb") as f:
            subs = client.audio.transcriptions.create(model="whisper-1", file=f,
                                                      response_format=fmt)
        assert subs.startswith(head) and "capital of France" in subs
        times = _times(subs)
        assert len(times) >= 2 and times == sorted(times) and 0 <= times[0] < times[-1]
        assert times[-1] <= duration + 0.05  # within the audio, though VAD trimmed it
    with QUESTION.open("rb") as f:
        verbose = client.audio.transcriptions.create(model="whisper-1", file=f,
                                                     response_format="verbose_json")
    assert abs(verbose.duration - duration) < 0.01 and verbose.segments
    assert "capital of france" in verbose.segments[0].text.lower()


def test_translation_and_models(client):
    with QUESTION.open("rb") as f:
        out = client.audio.translations.create(model="whisper-1", file=f)
    assert "france" in out.text.lower()
    assert [m.id for m in client.models.list()] == ["speechllm"]


def test_a_transcription_told_the_language_is_heard_in_it(client):
    """`language` reaches the recogniser: a short robotic English question that Whisper base
    detects as Thai (p = 0.84 here) comes back in English when told; a code that is no
    language code, or one Whisper does not know, is a 400 naming `language`."""
    wav = espeak("How many hours are in a day?")
    told = client.audio.transcriptions.create(model="whisper-1", language="en",
                                              file=("hours.wav", wav, "audio/wav"))
    assert "hours" in told.text.lower() and told.text.isascii(), told.text
    for bad in ("English", "xx"):
        with pytest.raises(openai.BadRequestError, match="language"):
            client.audio.transcriptions.create(model="whisper-1", language=bad,
                                               file=("hours.wav", wav, "audio/wav"))


def test_verbose_json_reports_the_language_the_speech_was_heard_in(client):
    """Untold, verbose_json names the language the recogniser detected (it used to say "en"
    whatever was spoken); told, the one it was told."""
    spanish = espeak("Buenos días. ¿Dónde está la estación de tren?", "es")
    heard = client.audio.transcriptions.create(model="whisper-1", response_format="verbose_json",
                                               file=("tren.wav", spanish, "audio/wav"))
    assert heard.language == "es" and "estación" in heard.text.lower(), heard
    with QUESTION.open("rb") as f:
        english = client.audio.transcriptions.create(model="whisper-1", file=f,
                                                     response_format="verbose_json")
    assert english.language == "en"
    told = client.audio.transcriptions.create(model="whisper-1", response_format="verbose_json",
                                              language="en",
                                              file=("tren.wav", spanish, "audio/wav"))
    assert told.language == "en"


def test_speech_round_trips_through_whisper(client):
    said = "The train leaves at nine in the morning."
    wav = client.audio.speech.create(model="tts-1", voice="alloy", input=said,
                                     response_format="wav").content
    audio, rate = sf.read(io.BytesIO(wav))
    assert rate == 22050 and len(audio) / rate > 1.0
    heard = client.audio.transcriptions.create(model="whisper-1",
                                               file=("speech.wav", wav, "audio/wav"))
    assert "train" in heard.text.lower() and "morning" in heard.text.lower()
    for fmt, magic in (("mp3", (b"ID3", b"\xff\xf3", b"\xff\xfb")), ("opus", (b"OggS",)),
                       ("flac", (b"fLaC",))):
        data = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello.",
                                          response_format=fmt).content
        assert data.startswith(magic), (fmt, data[:4])
        assert sf.info(io.BytesIO(data)).duration > 0.2  # a decodable file, not just a header


def test_chat_with_audio_in_and_audio_out(client):
    b64 = base64.b64encode(QUESTION.read_bytes()).decode()
    reply = client.chat.completions.create(
        model="speechllm", modalities=["text", "audio"], audio={"voice": "alloy",
                                                                "format": "wav"},
        messages=[{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}}]}],
        max_tokens=40)
    message = reply.choices[0].message
    assert "paris" in message.content.lower()
    assert message.audio.transcript == message.content
    spoken = load(base64.b64decode(message.audio.data), None)
    assert spoken.duration > 0.8
    extra = reply.model_extra["speechllm"]
    assert "capital of france" in extra["transcript"].lower()
    assert extra["timings"]["ttfa"] >= extra["timings"]["ttft"] > 0


def test_chat_streams_text_and_audio_deltas(client):
    b64 = base64.b64encode(QUESTION.read_bytes()).decode()
    stream = client.chat.completions.create(
        model="speechllm", stream=True, modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "pcm16"},
        messages=[{"role": "system", "content": "Answer in one short sentence."},
                  {"role": "user", "content": [
                      {"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}}]}],
        max_tokens=40)
    texts, pcm, finish, usage = [], b"", None, None
    for chunk in stream:
        usage = chunk.usage or usage
        delta = chunk.choices[0].delta
        texts.append(delta.content or "")
        if delta.audio is not None and delta.audio.data:
            pcm += base64.b64decode(delta.audio.data)
        finish = chunk.choices[0].finish_reason or finish
    assert len([t for t in texts if t]) > 2  # arrived in pieces
    assert "paris" in "".join(texts).lower() and finish == "stop"
    assert len(pcm) / 2 / 24000 > 0.8  # 24 kHz pcm16, as OpenAI streams it
    assert usage is not None and 0 < usage.completion_tokens <= 40  # on the last chunk


def test_text_chat_keeps_the_conversation(client):
    reply = client.chat.completions.create(model="speechllm", max_tokens=30, messages=[
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "What is my name? Answer with the name only."}])
    assert "ada" in reply.choices[0].message.content.lower()
    used = reply.usage  # the LLM's own tokens: the whole conversation in, the answer out
    assert used.prompt_tokens > 25 and 0 < used.completion_tokens <= 30
    assert used.total_tokens == used.prompt_tokens + used.completion_tokens


# -- protection ----------------------------------------------------------------------------

def _raw(server, path, data=None, key=KEY, content_type="application/json", method=None):
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(server.url + path, data=data, headers=headers,
                                     method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_every_route_needs_the_key(server, key):
    routes = [("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
              ("POST", "/v1/audio/transcriptions"), ("POST", "/v1/audio/translations"),
              ("POST", "/v1/audio/speech"), ("GET", "/"), ("GET", "/health")]
    for method, path in routes:
        status, body = _raw(server, path, b"{}" if method == "POST" else None, key=key)
        assert status == 401, path
        assert json.loads(body)["error"]["code"] == "invalid_api_key"
    if key is not None:  # the client itself refuses to send no key at all
        bad = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()


def test_bad_input_gets_a_clear_4xx(server, client):
    with pytest.raises(openai.BadRequestError, match="not a readable audio file"):
        client.audio.transcriptions.create(model="whisper-1",
                                           file=("notes.txt", b"just some text", "text/plain"))
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"", "audio/wav"))
    long = Audio(np.zeros(8000 * 25, np.float32), 8000).to_wav_bytes()  # 25 s > the 20 s cap
    with pytest.raises(openai.BadRequestError, match="the cap is 20 s"):
        client.audio.transcriptions.create(model="whisper-1", file=("long.wav", long,
                                                                    "audio/wav"))
    with pytest.raises(openai.APIStatusError) as big:  # 3 MB > the 2 MB upload cap
        client.audio.transcriptions.create(model="whisper-1",
                                           file=("big.wav", b"\0" * (3 << 20), "audio/wav"))
    assert big.value.status_code == 413
    status, body = _raw(server, "/v1/chat/completions", b'{"messages": [')
    assert status == 400 and "not valid JSON" in json.loads(body)["error"]["message"]
    status, body = _raw(server, "/v1/chat/completions", b'{"messages": []}')
    assert status == 400 and "messages" in json.loads(body)["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="base64"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "%%%", "format": "wav"}}]}])
    with pytest.raises(openai.BadRequestError, match="input"):
        client.audio.speech.create(model="tts-1", voice="alloy", input=" ")
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.audio.speech.create(model="tts-1", voice="alloy", input="hi",
                                   response_format="aiff")  # type: ignore[arg-type]
    silence = Audio.silence(2.0).to_wav_bytes()  # silence transcribes to nothing, not an error
    assert client.audio.transcriptions.create(model="whisper-1",
                                              file=("s.wav", silence, "audio/wav")).text == ""
    with pytest.raises(openai.BadRequestError, match="no speech"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {
                "data": base64.b64encode(silence).decode(), "format": "wav"}}]}])
    assert client.models.list().data  # and the server still serves


def test_concurrent_requests_all_succeed_in_order(client):
    """Eight clients at once share one worker: all answered, none lost; the queue is FIFO."""
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def ask(n: int) -> None:
        try:
            r = client.chat.completions.create(model="m", max_tokens=8, messages=[
                {"role": "user", "content": f"Repeat the number {n}."}])
            results[n] = r.choices[0].message.content
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors and len(results) == 8
    assert sum(str(n) in results[n] for n in results) >= 6  # each got its own answer


def test_a_transcription_prompt_biases_the_recogniser(client, voice, tmp_path):
    """OpenAI's `prompt` carries the names a recording is likely to hold: the same clip is
    transcribed with the name right only when they are given."""
    from speechllm.audio import save

    from ..conftest import say

    clip = tmp_path / "name.wav"
    save(say(voice, "Call Zbigniew and ask about the shipment."), clip)
    with clip.open("rb") as f:
        bare = client.audio.transcriptions.create(model="whisper-1", file=f).text
    with clip.open("rb") as f:
        told = client.audio.transcriptions.create(model="whisper-1", file=f,
                                                  prompt="Zbigniew, Aoife Brennan, Okonkwo")
    assert "zbigniew" not in bare.lower(), bare
    assert "zbigniew" in told.text.lower() and "shipment" in told.text.lower(), told.text


def test_unusable_spoken_question_is_refused_before_it_queues(client, server):
    """With the one worker busy on a long answer, a chat whose input_audio is not audio gets
    its 400 while that answer is still running (checked from the file's header, not after
    waiting for the models), streamed or not; the spoken question itself is decoded only
    when its turn comes."""
    long_answer: list[str] = []
    busy = threading.Thread(target=lambda: long_answer.append(
        client.chat.completions.create(model="m", max_tokens=200, messages=[
            {"role": "user", "content": "Count from one to two hundred in words."}]
        ).choices[0].message.content or ""))
    busy.start()
    try:
        for _ in range(200):  # until the long answer holds the worker
            _, body = _raw(server, "/health")
            if json.loads(body)["running"] == 1:
                break
            threading.Event().wait(0.05)
        junk = base64.b64encode(b"RIFF this is not a wav file at all " * 40).decode()
        part = {"type": "input_audio", "input_audio": {"data": junk, "format": "wav"}}
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError, match="not a readable audio file"):
                client.chat.completions.create(model="m", stream=stream, messages=[
                    {"role": "user", "content": [part]}])
            assert busy.is_alive()  # refused without waiting for the long answer
    finally:
        busy.join()
    assert long_answer and long_answer[0]
