"""Open any saved tokenizer folder by what its config says it is."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from speechllm.errors import ModelError
from speechllm.tokens.base import TOKENIZERS


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
    if kind is None and "vq_strides" in config:  # SNAC's own config names no kind
        kind = "snac"
    if kind not in TOKENIZERS:
        raise ModelError(f"{path}: not a tokenizer folder speechllm knows (kind {kind!r}; "
                         f"known: {', '.join(TOKENIZERS)})")
    return TOKENIZERS.get(kind)(path)
