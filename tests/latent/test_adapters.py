"""Adapters: documented output shapes, lengths, gradient flow, and no leak from padding."""

from __future__ import annotations

import math

import pytest
import torch

from speechllm.latent.adapters import ADAPTERS, AdapterConfig, make_adapter, output_length


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_shapes_lengths_and_gradients(kind):
    torch.manual_seed(0)
    config = AdapterConfig(kind=kind, enc_dim=24, llm_dim=40, hidden=32, stack=3, window=5,
                           queries=2)
    adapter = make_adapter(config)
    x = torch.randn(3, 17, 24, requires_grad=True)
    lengths = torch.tensor([17, 9, 1])
    y, out_len = adapter(x, lengths)
    assert y.shape == (3, output_length(config, 17), 40)
    assert out_len.tolist() == [output_length(config, n) for n in (17, 9, 1)]
    assert int(out_len.max()) == y.shape[1]
    y[0].sum().backward()
    assert x.grad is not None and x.grad[0].abs().sum() > 0  # reaches the encoder states
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in adapter.parameters())  # every weight learns


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_padding_never_changes_the_valid_outputs(kind):
    torch.manual_seed(0)
    config = AdapterConfig(kind=kind, enc_dim=8, llm_dim=12, hidden=16, stack=4, window=4)
    adapter = make_adapter(config).eval()
    x = torch.randn(1, 12, 8)
    padded = torch.cat([x, torch.randn(1, 8, 8) * 100], dim=1)  # loud junk after the end
    y1, n1 = adapter(x, torch.tensor([12]))
    y2, n2 = adapter(padded, torch.tensor([12]))
    assert n1.tolist() == n2.tolist()
    valid = int(n1[0])
    if kind == "conv":  # the last kept frame's receptive field may touch the padding
        valid -= 1
    torch.testing.assert_close(y1[:, :valid], y2[:, :valid])


def test_frame_rates_documented():
    # 50 states/s from Whisper: stacking 4 gives 12.5 embeddings/s; conv gives 12.5; a window
    # of 8 with 2 queries gives 12.5.
    for config in (AdapterConfig(kind="stack", stack=4), AdapterConfig(kind="conv"),
                   AdapterConfig(kind="qformer", window=8, queries=2)):
        assert output_length(config, 400) == math.ceil(400 / 4)  # 8 s of audio -> 100


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match=r"adapter\.kind"):
        AdapterConfig(kind="lstm")
    with pytest.raises(ValueError, match=r"adapter\.stack"):
        AdapterConfig(stack=0)
