"""bfloat16 training on the real Gemma 3 270M with LoRA, as the trainer sets it up."""

from __future__ import annotations

import copy

import peft
import pytest
import torch

from speechllm.lm import precision
from speechllm.lm.causal import load_causal_lm


@pytest.fixture(scope="module")
def lora_lm():
    lm, tok = load_causal_lm("gemma-3-270m")
    lm = peft.get_peft_model(lm, peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                 target_modules=["q_proj", "v_proj"]))
    # LoRA B starts at zero; move it off so that the base weights reach the LoRA gradients
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in lm.named_parameters():
            if p.requires_grad and "lora_B" in name:
                p.normal_(0, 0.02)
    ids = torch.tensor([tok("Audio: seven\nInstruction: say it\nAnswer: seven")["input_ids"]])
    return lm, ids


def step(lm, ids):
    """One autocast step: the loss and every trained weight's gradient."""
    lm.zero_grad()
    with precision.autocast("bf16", "cpu"):
        loss = lm(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in lm.named_parameters() if p.requires_grad}
    return float(loss.detach()), grads


def test_frozen_weights_kept_in_bf16_train_exactly_as_autocast_alone(lora_lm):
    """Storing the frozen body in bfloat16 changes nothing a run computes: the same loss and
    the same LoRA gradients to the bit, while the body's weights take half the memory and
    LoRA and the tied embedding/output table stay float32."""
    lm, ids = lora_lm
    stored = copy.deepcopy(lm)
    converted = precision.store_frozen_bf16(stored)
    body = sum(p.numel() for n, p in lm.named_parameters()
               if "layers." in n and "proj" in n and not p.requires_grad)
    assert converted == body > 50_000_000  # every projection of all 18 layers
    dtypes = {n: p.dtype for n, p in stored.named_parameters()}
    assert all(dtypes[n] == torch.float32 for n, p in stored.named_parameters() if p.requires_grad)
    assert stored.get_input_embeddings().weight.dtype == torch.float32
    assert stored.get_output_embeddings().weight.dtype == torch.float32

    loss, grads = step(lm, ids)
    loss_stored, grads_stored = step(stored, ids)
    assert loss_stored == loss
    assert grads.keys() == grads_stored.keys() and len(grads) == 2 * 2 * 18
    for name, grad in grads.items():
        assert torch.equal(grads_stored[name], grad), name
    # ...and the loss is a bfloat16 one: float32 products would give another
    with torch.no_grad():
        assert float(lm(input_ids=ids, labels=ids).loss) != loss
