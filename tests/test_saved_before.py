"""Models and a training checkpoint saved by speechllm at 1b2b661 (before the trainer and the
shared LM plumbing moved into speechllm.train and speechllm.lm) load and behave as they did.

`tests/fixtures/saved_at_1b2b661/` holds a latent model (whisper-tiny.en -> a small stack
adapter -> Gemma 3 270M), a token model (8 units, LoRA rank 2) and the latent run's step-2
checkpoint, each trained 2 steps on two espeak clips by that code; `expected.json` holds the
log-probabilities that code computed from them (`record.py`, run with it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from speechllm.audio import load
from speechllm.latent.model import LatentSpeechLM
from speechllm.tokens.model import TokenSpeechLM

SAVED = Path(__file__).parent / "fixtures" / "saved_at_1b2b661"
# The same weights on the same inputs: only float32 summation order can differ between
# machines (matrix kernels chosen per CPU), ~1e-5 nats after 18 layers; a model loaded wrong
# (a missing adapter, LoRA or row) moves these log-probabilities by whole nats.
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((SAVED / "expected.json").read_text())


def close(found: np.ndarray, want: dict) -> None:
    got = np.array([found[i] for i in want["ids"]])
    assert np.allclose(got, want["logprobs"], atol=TOLERANCE), (got[:5], want["logprobs"][:5])


def test_a_latent_model_saved_before_loads_and_scores_as_it_did(expected):
    model = LatentSpeechLM.from_pretrained(SAVED / "latent")
    scores = model.logprobs(load(SAVED / "two.wav"), "Transcribe the audio exactly.")[0]
    close(scores, expected["latent"])


def test_a_token_model_saved_before_reads_and_speaks_as_it_did(expected):
    model = TokenSpeechLM.from_pretrained(SAVED / "tokens")
    assert model.config.lora_rank == 2 and model.units.config.k == 8
    with torch.inference_mode():
        units, lengths = model.encoder.encode([load(SAVED / "two.wav")])
        assert units[0, : lengths[0]].tolist() == expected["units"]
        for name, ids, score in (
                ("tokens_read", model.understanding_ids(expected["units"],
                                                        "Transcribe the audio exactly."),
                 model.text_logits),
                ("tokens_speak", model.generation_ids("two"), model.audio_logits)):
            hidden = model._causal().model(inputs_embeds=model.embed_ids(ids)[None])
            found = torch.log_softmax(score(hidden.last_hidden_state[0, -1]).float(), -1)
            close(found.numpy(), expected[name])


def test_a_training_run_checkpointed_before_resumes(tmp_path):
    """The old run's checkpoint-2 (adapter, optimiser, schedule, losses) continues to step 3
    under the new trainer, keeping its first two losses."""
    from speechllm.train import load_config, train

    shutil.copy(SAVED / "two.wav", tmp_path / "two.wav")
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"audio": "two.wav", "text": "two"})
                                             + "\n")
    config = json.loads((SAVED / "latent-run" / "config.json").read_text())
    config["data"]["manifest"] = "manifest.jsonl"
    config["train"].update(steps=3, checkpoint_every=1)
    (tmp_path / "config.json").write_text(json.dumps(config))
    shutil.copytree(SAVED / "latent-run" / "checkpoint-2", tmp_path / "latent" / "checkpoint-2")
    before = torch.load(tmp_path / "latent" / "checkpoint-2" / "trainer_state.pt",
                        weights_only=False)
    result = train(load_config(tmp_path / "config.json"))
    assert result.steps == 3 and len(result.losses) == 3
    assert list(result.losses[:2]) == before["losses"]  # resumed, not redone
    assert (tmp_path / "latent" / "final" / "adapter.safetensors").is_file()
