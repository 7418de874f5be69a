"""The server runs any `SpeechLM` from an approach config, unchanged: here a Qwen2-Audio
checkpoint (small random weights in the real layout; see tests/random_checkpoints.py), served
and queried with the `openai` client. Its answers must be exactly the model's own, and a
spoken answer comes from the server's voice since this model answers in text."""

from __future__ import annotations

import base64
import json

import openai
import pytest

from speechllm.audio import load
from speechllm.latent.pretrained import Qwen2AudioSpeechLM
from speechllm.speechlm import Request

from ..random_checkpoints import write_qwen2_audio
from .conftest import QUESTION, start_server, stop_server


@pytest.fixture(scope="module")
def latent_server(tmp_path_factory):
    folder = write_qwen2_audio(tmp_path_factory.mktemp("qwen2_audio"))
    config = tmp_path_factory.mktemp("cfg") / "latent.json"
    config.write_text(json.dumps({"approach": "latent", "path": str(folder)}))
    server = start_server(config.parent, "--config", str(config), key=None)
    yield server, folder
    stop_server(server)


def test_a_latent_model_answers_through_every_route(latent_server):
    server, folder = latent_server
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    local = Qwen2AudioSpeechLM(folder)
    audio = load(QUESTION)

    heard = client.audio.transcriptions.create(model="m", file=QUESTION.open("rb"))
    expected = local.respond(Request(audio=audio, intent="transcribe", want_audio=False,
                                     system="Transcribe the audio exactly.")).text
    assert heard.text == expected

    reply = client.chat.completions.create(
        model="m", modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"},
        max_tokens=12, messages=[{"role": "user", "content": [{"type": "input_audio",
                                 "input_audio": {"data": base64.b64encode(
                                     QUESTION.read_bytes()).decode(), "format": "wav"}}]}])
    answer = local.respond(Request(audio=audio, max_tokens=12, want_audio=False)).text
    assert reply.choices[0].message.content == answer
    assert answer.strip()  # random weights still say something (seeded)
    spoken = load(base64.b64decode(reply.choices[0].message.audio.data), None)
    assert spoken.duration > 0.1  # the server's voice speaks a text-only model's answer
    models = client.models.list().data
    assert models[0].model_extra["approach"] == "latent"
