"""Speech encoders on real audio: CTranslate2 Whisper (embedded tiny.en) and the transformers
Whisper encoder on a small randomly initialised WhisperConfig (no HF weights here)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import WhisperConfig

from speechllm.audio import Audio, load
from speechllm.encoders import CT2WhisperEncoder, HFWhisperEncoder
from speechllm.errors import AudioError

from .conftest import FSDD


@pytest.fixture(scope="module")
def clips():
    return [load(FSDD / "recordings" / name) for name in ("0_george_0.wav", "7_jackson_0.wav")]


def test_ct2_whisper_states_cover_the_audio(clips):
    enc = CT2WhisperEncoder("whisper-tiny.en", window_seconds=4)
    states, lengths = enc.encode(clips)
    assert enc.dim == 384 and states.shape[2] == 384
    assert lengths.tolist() == [math.ceil(c.duration * 50) for c in clips]
    assert states.shape[:2] == (2, max(lengths))
    alone, _ = enc.encode(clips[1:])  # batching does not change an item's states
    np.testing.assert_allclose(alone[0, : lengths[1]], states[1, : lengths[1]], atol=1e-3)
    # different words give different states
    n = int(min(lengths))
    assert np.abs(states[0, :n] - states[1, :n]).mean() > 0.05
    with pytest.raises(AudioError, match="longer than the encoder window"):
        enc.encode([Audio.silence(5.0)])


def test_hf_whisper_encoder_random_config_trains(clips):
    config = WhisperConfig(d_model=64, encoder_layers=2, encoder_attention_heads=4,
                           encoder_ffn_dim=128, decoder_layers=1, decoder_attention_heads=4,
                           decoder_ffn_dim=128, num_mel_bins=80,
                           max_source_positions=200)  # a 4 s window
    enc = HFWhisperEncoder(config=config)
    assert enc.trainable and enc.dim == 64
    states, lengths = enc.encode(clips)
    assert states.shape == (2, max(lengths), 64)
    states.pow(2).mean().backward()
    grads = [p.grad for p in enc.module.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads[:4])
    with pytest.raises(ValueError, match="either"):
        HFWhisperEncoder()
    assert isinstance(states, torch.Tensor)
