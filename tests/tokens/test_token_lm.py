"""`TokenSpeechLM` for real: k-means units (fitted here on espeak-ng speech) in Gemma 3 270M's
grown vocabulary, trained by the latent trainer (new token rows + LoRA) to answer from units,
saved, reloaded, served through `approach.build`, and decoding held to the right family."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speechllm import approach
from speechllm.audio import Audio, save
from speechllm.latent.train import load_config, train
from speechllm.speechlm import Request
from speechllm.tokens.model import TokenSpeechLM
from speechllm.tokens.semantic import KMeansUnits, UnitsConfig
from speechllm.tts.espeak import EspeakOptions, EspeakTTS

WORDS = ["two", "seven", "nine"]
ASK = "Which number was said?"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    voices = [EspeakTTS(EspeakOptions("en-us", speed=160)),
              EspeakTTS(EspeakOptions("en-gb+m3", speed=140))]
    rows, audios = [], []
    for v, voice in enumerate(voices):
        for word in WORDS:
            audio = Audio.concat(list(voice.stream(word))).resample(16000)
            save(audio, root / f"{word}-{v}.wav")
            audios.append(audio)
            rows.append({"audio": f"{word}-{v}.wav", "text": word,
                         "tasks": [{"instruction": ASK, "answer": word}]})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    KMeansUnits.fit(audios, UnitsConfig(encoder="whisper-tiny.en", k=24)).save(root / "units")
    (root / "config.json").write_text(json.dumps({
        "model": {"approach": "tokens", "units": "units", "llm": "gemma-3-270m",
                  "lora_rank": 8},
        "data": {"manifest": "manifest.jsonl"},
        "train": {"output": "out", "steps": 40, "batch_size": 6, "lr": 0.01, "warmup": 4,
                  "lora_lr": 0.002, "checkpoint_every": 20}}))
    result = train(load_config(root / "config.json"))
    return root, result, rows


def test_token_model_learns_from_units_and_reloads(trained):
    root, result, rows = trained
    losses = result.losses
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) / 3, losses
    model = approach.build({"approach": "tokens", "path": str(result.output)})
    assert isinstance(model, TokenSpeechLM)
    assert model.adapter.weight.shape[0] == 24 + 2  # k units + start/end markers
    from speechllm.audio import load

    answers = [model.respond(Request(audio=load(root / r["audio"]), system=ASK,
                                     max_tokens=4)).text.strip(" .").lower() for r in rows]
    right = sum(a == r["text"] for a, r in zip(answers, rows, strict=True))
    assert right >= 4, answers  # it answers from units (training clips)
    again = TokenSpeechLM.from_pretrained(result.output)
    assert torch.equal(again.adapter.weight, model.adapter.weight)


def test_decoding_stays_in_its_token_family(trained):
    _, result, _ = trained
    model = TokenSpeechLM.from_pretrained(result.output)
    spoken = model.speak_units("seven", max_units=30)
    assert spoken and all(0 <= u < 24 for u in spoken)  # only units, never text
    more = model.continue_units([1, 2, 3], max_units=10)
    assert all(0 <= u < 24 for u in more)
    text_ids = model.generate(model.generation_ids("hello"), "text", 8)
    assert all(i < model.base_vocab for i in text_ids)  # text steps never emit units
