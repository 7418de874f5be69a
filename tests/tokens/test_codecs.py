"""Pretrained codecs behind the tokenizer protocols. No EnCodec, Mimi, DAC or SNAC weights can
be had offline, so each test builds the real architecture from a small randomly initialised
config, saves it in the real on-disk layout, and loads it through speechllm: what is covered is
loading, encoding (code shapes, rates, ranges, determinism) and decoding (a waveform of the
input's length at the codec's rate), not the quality of trained weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import snac
import torch
import transformers as tf

from speechllm.audio import load
from speechllm.errors import ModelError
from speechllm.tokens.codecs import SNACCodec, TransformersCodec
from speechllm.tokens.load import load_tokenizer

from ..conftest import FSDD

CONFIGS = {
    "encodec": lambda: tf.EncodecModel(tf.EncodecConfig(
        target_bandwidths=[1.5, 3.0], sampling_rate=24000, audio_channels=1, num_filters=4,
        hidden_size=16, num_residual_layers=1, upsampling_ratios=[8, 5, 4, 2],
        codebook_size=64, num_lstm_layers=1, normalize=False)),
    "mimi": lambda: tf.MimiModel(tf.MimiConfig(
        hidden_size=32, num_filters=4, num_residual_layers=1, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, head_dim=16, intermediate_size=64,
        codebook_size=64, codebook_dim=16, num_quantizers=4, num_semantic_quantizers=1,
        upsampling_ratios=[8, 6, 5, 4], sliding_window=50, upsample_groups=32,
        vector_quantization_hidden_dimension=16)),
    "dac": lambda: tf.DacModel(tf.DacConfig(
        encoder_hidden_size=8, decoder_hidden_size=16, n_codebooks=4, codebook_size=64,
        codebook_dim=4, downsampling_ratios=[2, 4, 5, 8], upsampling_ratios=[8, 5, 4, 2],
        hop_length=320, sampling_rate=16000)),
}


@pytest.fixture(scope="module")
def clip():
    return load(FSDD / "recordings" / "6_nicolas_3.wav", None)  # real speech, 8 kHz


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_transformers_codec_loads_encodes_and_decodes(kind, clip, tmp_path):
    torch.manual_seed(0)
    original = CONFIGS[kind]().eval()
    original.save_pretrained(str(tmp_path))
    codec = load_tokenizer(tmp_path)
    assert isinstance(codec, TransformersCodec) and codec.kind == kind
    codes = codec.encode(clip)
    rate, q = codec.info.rates[0], codec.info.codebooks
    assert len(codes) == q >= 2
    assert all(abs(len(c) - clip.duration * rate) <= 2 for c in codes)
    assert all(c.min() >= 0 and c.max() < codec.info.vocab for c in codes)
    assert all(np.array_equal(a, b) for a, b in zip(codes, codec.encode(clip), strict=True))
    # the weights on disk are the ones that were saved: the in-memory original agrees
    same = TransformersCodec(original)
    assert all(np.array_equal(a, b) for a, b in zip(codes, same.encode(clip), strict=True))
    audio = codec.decode(codes)
    assert audio.sample_rate == codec.info.sample_rate
    assert abs(audio.duration - clip.duration) < 2.5 / rate + 0.01


def test_snac_multi_rate_codes(clip, tmp_path):
    torch.manual_seed(0)
    config = {"sampling_rate": 24000, "encoder_dim": 8, "encoder_rates": [2, 4, 5, 6],
              "decoder_dim": 32, "decoder_rates": [6, 5, 4, 2], "attn_window_size": None,
              "codebook_size": 64, "codebook_dim": 4, "vq_strides": [4, 2, 1],
              "noise": True, "depthwise": True}
    model = snac.SNAC(**config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    codec = load_tokenizer(tmp_path)
    assert isinstance(codec, SNACCodec)
    assert codec.info.rates == (25.0, 50.0, 100.0)  # coarse to fine
    codes = codec.encode(clip)
    lengths = [len(c) for c in codes]
    assert lengths[1] == 2 * lengths[0] and lengths[2] == 4 * lengths[0]
    audio = codec.decode(codes)
    assert audio.sample_rate == 24000 and abs(audio.duration - clip.duration) < 0.2


def test_codec_folders_that_are_not_codecs_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelError, match="not a tokenizer folder"):
        load_tokenizer(tmp_path)
    with pytest.raises(ModelError, match="not one of"):
        TransformersCodec(tmp_path)
