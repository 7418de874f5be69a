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
from collections.abc import Sequence
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
    # one temporary folder per process: two processes converting at once (torchrun ranks, a
    # test run beside a recipe) must not remove each other's half-written folder
    tmp = cache.with_name(f"{cache.name}.partial-{os.getpid()}")
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
    if (cache / "config.json").is_file():  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
        return
    shutil.rmtree(cache, ignore_errors=True)  # a folder left by a crash holds no config.json
    try:
        tmp.rename(cache)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (cache / "config.json").is_file():  # lost a race to a finished copy: fine
            raise


def keep_layers(lm: Any, keep: int | Sequence[int]) -> None:
    """Cut a causal LM to some of its decoder layers, in place: the first `keep`, or the
    layers numbered in `keep` (in order, from 0).

    A narrow task (a few dozen words read from units or spoken as units) does not need all of
    a pretrained LLM's depth, and on a CPU a training step's time shrinks with its layers
    (bench/llm_layers.py).
    Keeping the last layer as well as the first ones keeps the hidden states the output rows
    were trained to read (the deep middle layers are the ones that matter least: Gromov et
    al. 2024). The embeddings, final norm and output rows stay."""
    body: Any = getattr(lm, "model", None)
    layers: Any = getattr(body, "layers", None)
    if layers is None:
        raise ModelError(f"{type(lm).__name__}: no decoder layers found to cut (model.layers)")
    total = len(layers)
    picks = list(range(keep)) if isinstance(keep, int) else [int(i) for i in keep]
    if not picks or picks != sorted(set(picks)) or not 0 <= picks[0] <= picks[-1] < total:
        raise ValueError(f"llm_layers: a count between 1 and {total} (this LLM's layers) or "
                         f"increasing layer numbers from 0 to {total - 1}, not {keep!r}")
    kept = [layers[i] for i in picks]
    for new, layer in enumerate(kept):
        # attention layers index their cache slot by this number
        parts: list[Any] = [layer, getattr(layer, "self_attn", None)]
        for part in parts:
            if hasattr(part, "layer_idx"):
                part.layer_idx = new
    body.layers = type(layers)(kept)
    lm.config.num_hidden_layers = len(picks)
    # per-layer settings (Gemma 3's sliding/full attention pattern) follow the cut, so caches
    # built from the config have one entry per remaining layer
    if isinstance(getattr(lm.config, "layer_types", None), list):
        lm.config.layer_types = [lm.config.layer_types[i] for i in picks]
