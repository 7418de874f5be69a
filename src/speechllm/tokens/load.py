"""Open any saved tokenizer folder by what its config says it is."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from speechllm.errors import ModelError


def load_tokenizer(folder: str | os.PathLike[str]) -> Any:
    """A k-means unit or mel RVQ tokenizer saved here, or a codec folder (EnCodec, Mimi, DAC,
    SNAC)."""
    path = Path(folder)
    try:
        config = json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: no config.json; not a tokenizer folder") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}/config.json: unreadable ({exc})") from None
    kind = config.get("kind") or config.get("model_type")
    if kind == "kmeans-units":
        from speechllm.tokens.semantic import KMeansUnits
        return KMeansUnits.load(path)
    if kind == "unit2speech":
        from speechllm.tokens.unit2speech import UnitToSpeech
        return UnitToSpeech.load(path)
    if kind == "mel-rvq":
        from speechllm.tokens.acoustic import MelRVQ
        return MelRVQ.load(path)
    if kind in ("encodec", "mimi", "dac"):
        from speechllm.tokens.codecs import TransformersCodec
        return TransformersCodec(path)
    if (path / "pytorch_model.bin").is_file() and "vq_strides" in config:
        from speechllm.tokens.codecs import SNACCodec
        return SNACCodec(path)
    raise ModelError(f"{path}: not a tokenizer folder speechllm knows (kind {kind!r})")
