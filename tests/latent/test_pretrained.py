"""Ultravox and Qwen2-Audio checkpoints through the one `SpeechLM` interface.

No weights of either can be had offline, so each test writes a checkpoint folder in the real
on-disk layout from a small randomly initialised config of the real architecture (the Whisper
encoder, the Qwen2 LM and tokenizer, Qwen2-Audio's transformers classes), then loads it through
speechllm as a user would (`approach.build`). What is covered: finding every weight by name,
the numbers those weights give, generation, streaming and errors; not the quality of a trained
model.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import (
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2Config,
    Qwen2ForCausalLM,
    WhisperConfig,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from speechllm import approach
from speechllm.audio import Audio, load
from speechllm.encoders import log_mel
from speechllm.errors import AudioError, ModelError
from speechllm.latent.model import LatentSpeechLM
from speechllm.latent.pretrained import Qwen2AudioSpeechLM
from speechllm.speechlm import Done, Request, TextDelta

from .. import random_checkpoints
from ..conftest import FSDD
from ..random_checkpoints import write_qwen2_audio


@pytest.fixture(scope="module")
def qwen_tokenizer():
    """The embedded Qwen2.5 tokenizer (Ultravox and Qwen2-Audio use Qwen/Llama tokenizers)."""
    return random_checkpoints.qwen_tokenizer()


@pytest.fixture(scope="module")
def clips():
    return [load(FSDD / "recordings" / name) for name in ("3_theo_0.wav", "8_lucas_1.wav")]


def _tiny_lm(vocab: int) -> Qwen2ForCausalLM:
    return Qwen2ForCausalLM(Qwen2Config(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True))


def _rms(x, w):
    return w * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


@pytest.fixture(scope="module")
def ultravox(tmp_path_factory, qwen_tokenizer):
    """An Ultravox v0.5-layout checkpoint: config.json, model.safetensors, tokenizer."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ultravox")
    audio_cfg = WhisperConfig(d_model=32, encoder_layers=1, encoder_attention_heads=2,
                              encoder_ffn_dim=64, decoder_layers=1, decoder_attention_heads=2,
                              decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=200)
    encoder = WhisperEncoder(audio_cfg).eval()
    lm = _tiny_lm(len(qwen_tokenizer)).eval()
    stack, hidden = 8, 64
    projector = {"ln_pre.weight": 0.4 + torch.rand(32 * stack),
                 "linear_1.weight": torch.randn(hidden, 32 * stack) * 0.05,
                 "ln_mid.weight": 0.4 + torch.rand(hidden // 2),
                 "linear_2.weight": torch.randn(32, hidden // 2) * 0.05}
    state = {f"audio_tower.{k}": v for k, v in encoder.state_dict().items()}
    # save_pretrained drops the tied output head; the loader must re-tie it
    state |= {f"language_model.{k}": v for k, v in lm.state_dict().items()
              if k != "lm_head.weight"}
    state |= {f"multi_modal_projector.{k}": v for k, v in projector.items()}
    save_file({k: v.contiguous().clone() for k, v in state.items()},
              str(folder / "model.safetensors"))
    config = {"model_type": "ultravox", "architectures": ["UltravoxModel"],
              "audio_config": audio_cfg.to_dict(), "text_config": lm.config.to_dict(),
              "stack_factor": stack, "hidden_size": hidden, "projector_act": "swiglu",
              "projector_ln_mid": True, "norm_init": 0.4,
              "audio_model_id": "openai/whisper-large-v3-turbo",
              "text_model_id": "meta-llama/Llama-3.2-1B-Instruct"}
    (folder / "config.json").write_text(json.dumps(config))
    qwen_tokenizer.save_pretrained(str(folder))
    return folder, encoder, lm, projector


def test_ultravox_weights_map_onto_the_latent_parts(ultravox, clips):
    folder, encoder, lm, projector = ultravox
    model = approach.build({"approach": "latent", "path": str(folder)})
    assert isinstance(model, LatentSpeechLM)
    mel, lengths = log_mel(clips, 4.0)
    with torch.no_grad():
        ref_states = encoder(torch.from_numpy(mel)).last_hidden_state
        states, got_lengths = model.encode_audio(clips)
        torch.testing.assert_close(states, ref_states[:, : states.shape[1]])
        assert got_lengths.tolist() == lengths.tolist()
        # Ultravox's projector, written out from its published definition
        x = torch.nn.functional.pad(states, (0, 0, 0, (-states.shape[1]) % 8))
        x = x.reshape(2, -1, 32 * 8)
        h = _rms(x, projector["ln_pre.weight"]) @ projector["linear_1.weight"].T
        value, gate = h.chunk(2, dim=-1)
        h = _rms(torch.nn.functional.silu(gate) * value, projector["ln_mid.weight"])
        ref_audio = h @ projector["linear_2.weight"].T
        audio, _ = model.adapter(states, got_lengths)
        torch.testing.assert_close(audio, ref_audio)
        ids = torch.tensor([[1, 20, 300, 4000]])
        torch.testing.assert_close(model.lm(input_ids=ids).logits, lm(input_ids=ids).logits)
        # the two recordings reach the LLM: their first answer-token distributions differ
        first = [model.lm(**model.embed(states[b:b + 1], got_lengths[b:b + 1],
                                        ["What number is said?"])).logits[0, -1]
                 for b in range(2)]
        assert (first[0] - first[1]).abs().max() > 1e-4


def test_ultravox_answers_and_streams_through_the_interface(ultravox, clips):
    model = approach.build({"approach": "latent", "path": str(ultravox[0])})
    request = Request(audio=clips[0], system="What number is said?", max_tokens=6,
                      want_audio=False)
    response = model.respond(request)
    assert response.timings.ttft is not None and response.timings.ttft > 0
    assert {s.name for s in response.timings.spans} >= {"encode", "prefill", "decode"}

    async def collect():
        return [e async for e in model.stream(request)]

    events = asyncio.run(collect())
    done = [e for e in events if isinstance(e, Done)]
    assert len(done) == 1 and done[0].response.text == response.text  # greedy: same answer
    assert "".join(e.text for e in events if isinstance(e, TextDelta)).strip() == response.text


def test_ultravox_projector_only_checkpoint_needs_its_base_models(ultravox, tmp_path):
    folder = ultravox[0]
    from safetensors.torch import load_file
    state = load_file(str(folder / "model.safetensors"))
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    save_file({k: v for k, v in state.items() if k.startswith("multi_modal_projector.")},
              str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelError, match=r"openai/whisper-large-v3-turbo.*audio_model"):
        approach.build({"approach": "latent", "path": str(tmp_path)})
    with pytest.raises(ValueError, match="audio_model_path: not a latent setting"):
        approach.check({"approach": "latent", "path": str(tmp_path), "audio_model_path": "x"})


@pytest.fixture(scope="module")
def qwen2_audio(tmp_path_factory):
    return write_qwen2_audio(tmp_path_factory.mktemp("qwen2_audio"))


def test_qwen2_audio_generates_what_transformers_generates(qwen2_audio, clips):
    model = approach.build({"approach": "latent", "path": str(qwen2_audio)})
    assert isinstance(model, Qwen2AudioSpeechLM)
    request = Request(audio=clips[1], system="What number is said?", max_tokens=5,
                      want_audio=False)
    response = model.respond(request)
    assert response.timings.ttft is not None

    # the same turn straight through transformers' own classes
    proc = Qwen2AudioProcessor.from_pretrained(str(qwen2_audio))
    hf = Qwen2AudioForConditionalGeneration.from_pretrained(str(qwen2_audio)).eval()
    prompt = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "audio", "audio_url": "x"},
                                      {"type": "text", "text": "What number is said?"}]}],
        add_generation_prompt=True, tokenize=False)
    inputs = proc(text=prompt, audio=[clips[1].resample(16000).samples], sampling_rate=16000,
                  return_tensors="pt")
    with torch.no_grad():
        out = hf.generate(**inputs, max_new_tokens=5, do_sample=False)
    expected = proc.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:],
                                     skip_special_tokens=True).strip()
    assert response.text == expected

    async def collect():
        return [e async for e in model.stream(request)]

    done = [e for e in asyncio.run(collect()) if isinstance(e, Done)]
    assert done and done[0].response.text == response.text
    with pytest.raises(AudioError, match="longer than Qwen2-Audio's 30 s window"):
        model.respond(Request(audio=Audio.silence(31.0), want_audio=False))


def test_unknown_checkpoint_folders_are_refused_clearly(tmp_path):
    with pytest.raises(ModelError, match=r"no config\.json"):
        approach.build({"approach": "latent", "path": str(tmp_path)})
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelError, match=r"neither .* \(model_type 'bert'\)"):
        approach.build({"approach": "latent", "path": str(tmp_path)})
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(ModelError, match="unreadable"):
        approach.build({"approach": "latent", "path": str(tmp_path)})
