"""The LLM of a latent model: a transformers causal LM.

The embedded GGUF models (Qwen2.5 0.5B Instruct, Gemma 3 270M) are dequantised by
transformers' GGUF reader the first time (about a minute) and cached as safetensors under
`$SPEECHLLM_HOME/hf/<name>`, so later loads take seconds. A Hugging Face model directory of
the user's own loads directly; a .gguf path of the user's own is converted and cached the same
way (keyed by file name, size and modification time).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from speechllm import models
from speechllm._optional import require
from speechllm.errors import ModelError


def _cache_for(gguf: Path, name: str) -> Path:
    stat = gguf.stat()
    key = name if name in models.REGISTRY else f"{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    return models.cache_dir() / "hf" / key


def load_causal_lm(model: str | os.PathLike[str] = "qwen2.5-0.5b-instruct",
                   dtype: str = "float32") -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode with every weight frozen; callers unfreeze what they
    train."""
    torch = require("torch", "latent")
    transformers = require("transformers", "latent")
    text = str(model)
    path = (models.resolve(text, models.REGISTRY[text].role) if text in models.REGISTRY
            else Path(text).expanduser())
    if not path.exists():
        raise ModelError(f"{text!r}: no such model (an embedded LLM name, a .gguf file or a "
                         "Hugging Face model directory)")
    if path.is_file():
        cache = _cache_for(path, text)
        if not (cache / "config.json").is_file():
            _convert(path, cache, transformers, torch)
        path = cache
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        lm = transformers.AutoModelForCausalLM.from_pretrained(
            str(path), local_files_only=True, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a causal LM from {path}: {exc}") from None
    lm.eval()
    lm.requires_grad_(False)
    return lm, tok


def _convert(gguf: Path, cache: Path, transformers: Any, torch: Any) -> None:
    """GGUF -> safetensors directory, written to a temporary folder and renamed when whole."""
    tmp = cache.with_name(cache.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        lm = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # the GGUF reader raises many kinds for damaged files
        raise ModelError(f"cannot read {gguf} as a GGUF model: {exc}") from None
    # The weights are dequantised fp32 now; drop the GGUF marker that blocks saving them.
    lm.hf_quantizer = None
    lm.is_quantized = False
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    tmp.mkdir(parents=True)
    lm.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    shutil.rmtree(cache, ignore_errors=True)
    tmp.rename(cache)
