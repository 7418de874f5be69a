"""`TokenSpeechLM` for real: k-means units (fitted here on espeak-ng speech) in Gemma 3 270M's
grown vocabulary, trained by the latent trainer (new token rows + LoRA) to answer from units
and to say words as units, saved, reloaded, served through `approach.build`, decoding held to
the right family, and its spoken answers made audible by a unit-to-speech decoder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from speechllm import approach
from speechllm.audio import Audio, save
from speechllm.speechlm import Request
from speechllm.tokens.model import TokenSpeechLM
from speechllm.tokens.semantic import KMeansUnits, UnitsConfig
from speechllm.tokens.unit2speech import U2SConfig, UnitToSpeech
from speechllm.train import load_config, train
from speechllm.tts.espeak import EspeakOptions, EspeakTTS
from tests.tokens.unit_distance import unit_distance

WORDS = ["two", "seven", "nine"]
ASK = "Which number was said?"
# LoRA on every projection of a Gemma block (the default is q/v only)
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


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
    # the first voice also teaches the speaking direction: its words as its own units
    speak = [{**r, "tasks": [{"speak": True}]} for r in rows[: len(WORDS)]]
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "speak.jsonl").write_text("".join(json.dumps(r) + "\n" for r in speak))
    units = KMeansUnits.fit(audios, UnitsConfig(encoder="whisper-tiny.en", k=24))
    # a tiny unit-to-speech decoder, so the model can make its units audible
    UnitToSpeech.train(audios[: len(WORDS)], units, U2SConfig.for_units(
        units, channels=32, layers=2, steps=10, batch_size=4)).save(root / "voice")
    (root / "config.json").write_text(json.dumps({
        "model": {"approach": "tokens", "units": "voice", "llm": "gemma-3-270m",
                  "lora_rank": 8, "lora_modules": ALL_PROJECTIONS},
        "data": {"manifest": ["manifest.jsonl", "speak.jsonl"], "weights": [1, 1]},
        "train": {"output": "out", "steps": 60, "batch_size": 6, "lr": 0.01, "warmup": 4,
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

    answers = [model.respond(Request(audio=load(root / r["audio"]), system=ASK, max_tokens=4,
                                     want_audio=False)).text.strip(" .").lower() for r in rows]
    right = sum(a == r["text"] for a, r in zip(answers, rows, strict=True))
    assert right >= 4, answers  # it answers from units (training clips)
    again = TokenSpeechLM.from_pretrained(result.output)
    assert torch.equal(again.adapter.weight, model.adapter.weight)
    # LoRA went where the config asked (the MLP too), and came back with it
    wrapped = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in again.lm.named_parameters()
               if ".lora_A" in n}
    assert wrapped == set(ALL_PROJECTIONS), wrapped
    assert again.config.lora_modules == tuple(ALL_PROJECTIONS)
    reloaded = [again.respond(Request(audio=load(root / r["audio"]), system=ASK, max_tokens=4,
                                      want_audio=False)).text.strip(" .").lower()
                for r in rows[:4]]
    assert reloaded == answers[:4]


def test_decoding_stays_in_its_token_family(trained):
    _, result, _ = trained
    model = TokenSpeechLM.from_pretrained(result.output)
    spoken = model.speak_units("seven", max_units=30)
    assert spoken and all(0 <= u < 24 for u in spoken)  # only units, never text
    more = model.continue_units([1, 2, 3], max_units=10)
    assert all(0 <= u < 24 for u in more)
    text_ids = model.generate(model.generation_ids("hello"), "text", 8)
    assert all(i < model.base_vocab for i in text_ids)  # text steps never emit units


def test_token_model_says_words_as_their_units_and_answers_aloud(trained):
    """Speaking 'seven' gives units nearer the recorded 'seven' than any other word's; the
    model's spoken answer comes back as audio (respond, stream and `say`)."""
    root, result, rows = trained
    model = TokenSpeechLM.from_pretrained(result.output)
    assert model.voice is not None  # the unit-to-speech decoder was saved with the model
    from speechllm.audio import load

    recorded = {r["text"]: model.units.encode(load(root / r["audio"]))[0].tolist()
                for r in rows[: len(WORDS)]}
    nearest = 0
    for word in WORDS:
        spoken = model.speak_units(word)
        assert 0 < len(spoken) <= model.max_units(word)
        mine = unit_distance(spoken, recorded[word])
        nearest += all(mine < unit_distance(spoken, recorded[w]) for w in WORDS if w != word)
    assert nearest >= 2, nearest
    audio = model.say("nine")
    assert audio.duration > 0.1 and np.abs(audio.samples).max() > 0.01
    reply = model.respond(Request(audio=load(root / rows[0]["audio"]), system=ASK,
                                  max_tokens=4))
    assert reply.audio is not None and reply.audio.duration > 0.1
    assert reply.timings.ttfa is not None

    import asyncio

    from speechllm.speechlm import AudioChunk, Done

    async def events():
        return [e async for e in model.stream(Request(audio=load(root / rows[1]["audio"]),
                                                      system=ASK, max_tokens=4))]

    got = asyncio.run(events())
    assert any(isinstance(e, AudioChunk) and e.audio.duration > 0.1 for e in got)
    assert isinstance(got[-1], Done) and got[-1].response.audio is not None


def test_cli_says_text_and_refuses_nothing_to_say(trained, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from speechllm.audio import load

    _, result, _ = trained
    exe = str(Path(sys.executable).parent / "speechllm")
    done = subprocess.run([exe, "tokens", "say", str(result.output), "two", "-o",
                           str(tmp_path / "two.wav")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert load(tmp_path / "two.wav").duration > 0.1
    empty = subprocess.run([exe, "tokens", "say", str(result.output), " ", "-o",
                            str(tmp_path / "none.wav")], capture_output=True, text=True,
                           timeout=300)
    assert empty.returncode != 0 and "nothing to say" in empty.stderr
    assert not (tmp_path / "none.wav").exists()


def test_decoder_trains_on_the_token_models_teacher_forced_units(trained, tmp_path):
    """`tokens train-u2s --lm MODEL`: the decoder also reads the model's prediction at each
    unit of its speaking clips (one per unit, mostly the clip's own units on clips it learnt);
    the decoder then speaks; a model with other units is refused by name."""
    import subprocess
    import sys
    from pathlib import Path

    from speechllm.audio import load
    from speechllm.data import read_manifest
    from speechllm.tokens.model import SpeakTarget

    root, result, _ = trained
    model = TokenSpeechLM.from_pretrained(result.output)
    item = read_manifest(root / "speak.jsonl")[1]
    clip = model.units.encode(load(item.audio))[0].tolist()
    predicted = model.teacher_forced_units(SpeakTarget(item.text), clip)
    assert len(predicted) == len(clip) and all(0 <= u < 24 for u in predicted)
    exe = str(Path(sys.executable).parent / "speechllm")
    done = subprocess.run([exe, "tokens", "train-u2s", str(root / "speak.jsonl"), "--units",
                           str(root / "voice/units"), "--lm", str(result.output), "-o",
                           str(tmp_path / "u2s"), "--steps", "5"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    share = float(done.stdout.split("clips' on ")[1].split("%")[0])
    assert share > 50, done.stdout  # it learnt these clips: its units are mostly theirs
    spoken = UnitToSpeech.load(tmp_path / "u2s").decode((np.asarray(predicted),))
    assert abs(spoken.duration - len(clip) / 25) < 0.1
    u = model.units  # the same k, other centroids
    other = KMeansUnits(u.config, u.centroids + 1.0, u.mean, u.std).save(tmp_path / "other")
    refused = subprocess.run([exe, "tokens", "train-u2s", str(root / "speak.jsonl"), "--units",
                              str(other), "--lm", str(result.output), "-o",
                              str(tmp_path / "no"), "--steps", "5"],
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "writes other units than --units" in refused.stderr


def test_speak_tasks_need_a_token_model(trained):
    root, _, _ = trained
    from speechllm.data import read_manifest
    from speechllm.latent.model import LatentConfig
    from speechllm.train import ConfigError, examples

    with pytest.raises(ConfigError, match="speak task needs a token model"):
        examples(read_manifest(root / "speak.jsonl"), "latent", LatentConfig())


def test_a_rerun_reads_units_from_its_cache_and_survives_a_damaged_one(trained, monkeypatch):
    """Continuing a run (more steps, same output folder) takes every clip's units from
    `encoded.pt` instead of running the Whisper encoder again, and reads no audio; damaged
    caches (the run's and the shared units cache) are rebuilt."""
    import speechllm.audio
    from speechllm.tokens.unit_cache import UnitCache

    root, _, rows = trained
    shutil.copytree(root / "out", root / "again")
    cfg = json.loads((root / "config.json").read_text())
    calls: list[int] = []
    loads: list[int] = []
    real, real_load = KMeansUnits.encode_many, speechllm.audio.load

    def counting(self, audios):
        calls.append(len(audios))
        return real(self, audios)

    def counting_load(*args, **kwargs):
        loads.append(1)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(KMeansUnits, "encode_many", counting)
    monkeypatch.setattr(speechllm.audio, "load", counting_load)
    for steps, damage in ((61, False), (62, True)):
        if damage:
            assert not loads and not calls  # the first rerun read and encoded nothing
            (root / "again" / "encoded.pt").write_bytes(b"not a cache")
            UnitCache(KMeansUnits.load(root / "voice" / "units")).path.write_bytes(b"junk")
        cfg["train"] |= {"output": "again", "steps": steps}
        (root / "again.json").write_text(json.dumps(cfg))
        result = train(load_config(root / "again.json"))
        assert result.steps == steps
    clips = len(rows) + len(WORDS)  # both manifests' items
    assert sum(calls) == clips and len(loads) == clips  # the second encoded and read them all


def test_balanced_loss_weighs_hearing_and_speaking_alike(trained):
    """With `balance_families` a mixed batch's loss is the understanding answer's mean plus
    the spoken units' mean, so a 2-token answer counts as much as ~20 unit targets; without
    it every target token weighs the same and the loss lies between the two."""
    import dataclasses

    from speechllm.audio import load
    from speechllm.tokens.model import SPEAK_TASK

    root, result, rows = trained
    model = TokenSpeechLM.from_pretrained(result.output)
    states, lengths = model.encode_audio([load(root / rows[0]["audio"])])
    word = rows[0]["text"]

    def loss(tasks: list[str], balance: bool) -> float:
        model.config = dataclasses.replace(model.config, balance_families=balance)
        with torch.no_grad():
            return float(model.loss(states.repeat(len(tasks), 1), lengths.repeat(len(tasks)),
                                    tasks, [word] * len(tasks)))

    hear, say = loss([ASK], False), loss([SPEAK_TASK], False)
    assert loss([ASK], True) == pytest.approx(hear)  # one family: nothing to balance
    assert loss([ASK, SPEAK_TASK], True) == pytest.approx(hear + say, rel=1e-3)
    plain = loss([ASK, SPEAK_TASK], False)
    assert min(hear, say) - 1e-4 < plain < max(hear, say) + 1e-4


def test_packed_batches_train_on_the_padded_loss(trained):
    """Packed end to end, a batch's loss is the padded batch's, and no sequence sees another:
    a row packed beside its own copy scores as it does alone."""
    import dataclasses

    from speechllm.audio import load
    from speechllm.tokens.model import SPEAK_TASK

    root, result, rows = trained
    model = TokenSpeechLM.from_pretrained(result.output)
    audio = [load(root / r["audio"]) for r in rows[:3]]
    states, lengths = model.encode_audio(audio)
    tasks = [ASK, SPEAK_TASK, ASK]
    words = [r["text"] for r in rows[:3]]

    def loss(picks: list[int], packed: bool) -> float:
        model.config = dataclasses.replace(model.config, packed_batches=packed)
        with torch.no_grad():
            return float(model.loss(states[picks], lengths[picks], [tasks[n] for n in picks],
                                    [words[n] for n in picks]))

    assert loss([0, 1, 2], True) == pytest.approx(loss([0, 1, 2], False), rel=1e-4)
    alone = loss([0], False)
    assert loss([0, 0], True) == pytest.approx(alone, rel=1e-4)
    assert loss([1, 1, 1], True) == pytest.approx(loss([1], False), rel=1e-4)


def test_a_model_cut_to_fewer_layers_trains_saves_and_reloads_cut(trained, tmp_path):
    """`llm_layers` keeps some of the LLM's layers (here the first five and the last): the
    model learns on them, its saved config says so, it comes back cut (not whole) and answers
    from units; a cut deeper than the LLM is refused by name."""
    from speechllm.audio import load

    root, _, rows = trained
    config = json.loads((root / "config.json").read_text())
    config["model"]["llm_layers"] = [0, 1, 2, 3, 4, 17]
    config["data"] = {"manifest": "manifest.jsonl"}
    config["train"].update(output=str(tmp_path / "cut"), steps=40, checkpoint_every=40)
    (root / "cut.json").write_text(json.dumps(config))
    result = train(load_config(root / "cut.json"))
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5]) / 2, result.losses
    saved = json.loads((result.output / "config.json").read_text())
    assert saved["llm_layers"] == [0, 1, 2, 3, 4, 17]
    model = TokenSpeechLM.from_pretrained(result.output)
    assert len(model.lm.get_base_model().model.layers) == 6
    # Gemma 3's attention pattern follows the cut: layer 17 is one of its full-attention ones
    assert model.lm.config.layer_types[-1] == "full_attention"

    answers = [model.respond(Request(audio=load(root / r["audio"]), system=ASK, max_tokens=4,
                                     want_audio=False)).text.strip(" .").lower() for r in rows]
    assert sum(a == r["text"] for a, r in zip(answers, rows, strict=True)) >= 4, answers
    config["model"]["llm_layers"] = 19  # Gemma 3 270M has 18
    (root / "deep.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="llm_layers: a count between 1 and 18"):
        train(load_config(root / "deep.json"))


def test_a_model_trained_with_bf16_products_learns_and_saves_float32_weights(trained, tmp_path):
    """`train.autocast: "bf16"` (matrix products in bfloat16, emulated where the CPU lacks
    them): the model still learns to answer from units, the run reports the precision it
    used, and what it saves is float32 like any other model (it loads and answers alike)."""
    from safetensors.torch import load_file

    from speechllm.audio import load

    root, _, rows = trained
    config = json.loads((root / "config.json").read_text())
    config["model"]["llm_layers"] = [0, 1, 2, 3, 4, 17]  # a cut LLM: the test's time
    config["data"] = {"manifest": "manifest.jsonl"}
    config["train"].update(output=str(tmp_path / "bf16"), steps=40, checkpoint_every=40,
                           autocast="bf16")
    (root / "bf16.json").write_text(json.dumps(config))
    result = train(load_config(root / "bf16.json"))
    assert result.precision == "bf16"
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5]) / 2, result.losses
    saved = [load_file(str(f)) for f in result.output.rglob("*.safetensors")]
    assert saved and all(t.dtype == torch.float32 for w in saved for t in w.values())
    model = TokenSpeechLM.from_pretrained(result.output)
    answers = [model.respond(Request(audio=load(root / r["audio"]), system=ASK, max_tokens=4,
                                     want_audio=False)).text.strip(" .").lower() for r in rows]
    assert sum(a == r["text"] for a, r in zip(answers, rows, strict=True)) >= 4, answers


def test_an_approach_config_sets_the_models_answer_options_and_cancel_reaches_it(trained):
    """`options` in an approach config: the instruction used when a request has none, the
    answer limit when a request sets none, and the spoken-word floor; and closing the stream
    stops the token model within a token (as for every threaded model)."""
    from speechllm.audio import load

    from ..cancelling import tokens_after_cancel

    root, result, rows = trained
    model = approach.build({"approach": "tokens", "path": str(result.output),
                            "options": {"instruction": ASK, "max_tokens": 1,
                                        "min_word_units": 4}})
    assert model.config.min_word_units == 4
    clip = load(root / rows[0]["audio"])
    steps: list[int] = []
    decode = model.tok.decode
    model.tok.decode = lambda ids, **kw: steps.append(len(ids)) or decode(ids, **kw)
    model.respond(Request(audio=clip, want_audio=False))  # no system prompt, no max_tokens
    assert max(steps) == 1  # the config's limit held
    taught = model.respond(Request(audio=clip, want_audio=False, max_tokens=4)).text
    assert taught.strip(" .").lower() == rows[0]["text"]  # ASK came from the config

    model.eos_ids = set()  # run on until stopped
    steps.clear()
    at_close, total = tokens_after_cancel(model, Request(audio=clip, want_audio=False,
                                                         max_tokens=80), steps)
    assert total - at_close <= 2 and total < 20, (at_close, total)
    assert model._lock.acquire(blocking=False)
    model._lock.release()
