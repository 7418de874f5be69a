"""Checkpoints of real architectures with small random weights, written in their real on-disk
layout (no pretrained weights of these models can be had offline)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any


@functools.lru_cache(maxsize=1)
def qwen_tokenizer() -> Any:
    """The embedded Qwen2.5 tokenizer, read from its GGUF (about 15 s, once per process)."""
    from transformers import AutoTokenizer

    from speechllm import models

    gguf = models.resolve("qwen2.5-0.5b-instruct", "chat")
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def write_qwen2_audio(folder: Path, seed: int = 0) -> Path:
    """A Qwen2-Audio checkpoint written by transformers itself, with its processor."""
    import torch
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    torch.manual_seed(seed)
    tok = copy.deepcopy(qwen_tokenizer())
    tok.add_special_tokens({"additional_special_tokens": ["<|AUDIO|>", "<|audio_bos|>",
                                                          "<|audio_eos|>"]})
    config = Qwen2AudioConfig(
        audio_config={"model_type": "qwen2_audio_encoder", "d_model": 32, "encoder_layers": 1,
                      "encoder_attention_heads": 2, "encoder_ffn_dim": 64,
                      "num_mel_bins": 128},
        text_config={"model_type": "qwen2", "vocab_size": len(tok), "hidden_size": 32,
                     "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 1},
        audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"))
    Qwen2AudioForConditionalGeneration(config).save_pretrained(str(folder))
    Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128),
                        tokenizer=tok).save_pretrained(str(folder))
    return folder
