"""Saved-model folders: every format speechllm writes (unit tokenizer, mel RVQ, unit-to-speech,
vocoder, latent model, token model) is a folder with a `config.json` beside its weights, read
and written through here, so each reports a missing or damaged folder the same way:

    with opening(path, "unit tokenizer"):
        raw = read_config(path, "kmeans-units")
        ...   # a missing file -> ModelError "<path>: not a saved unit tokenizer (... missing)"
              # a bad value   -> ModelError "<path>: damaged unit tokenizer (...)"
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from speechllm.errors import ModelError


def write_config(folder: str | os.PathLike[str], fields: dict[str, Any],
                 kind: str | None = None) -> Path:
    """Create `folder` and its config.json (`kind` first, when the format has one)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    body = {"kind": kind, **fields} if kind is not None else fields
    (out / "config.json").write_text(json.dumps(body, indent=2) + "\n")
    return out


def read_config(folder: str | os.PathLike[str], kind: str | None = None) -> dict[str, Any]:
    """The folder's config.json as a dict, without its "kind", which must be `kind` (when
    given); ValueError otherwise. Use inside `opening`."""
    raw = json.loads((Path(folder) / "config.json").read_text())
    if not isinstance(raw, dict):
        raise ValueError("config.json is not an object")
    if kind is not None and raw.pop("kind", None) != kind:
        raise ValueError(f"config.json is not a {kind!r} config")
    return raw


@contextlib.contextmanager
def opening(folder: str | os.PathLike[str], what: str) -> Iterator[Path]:
    """Inside: reading the folder; a missing file or a value that does not fit becomes a
    ModelError naming the folder and what it should have been."""
    path = Path(folder)
    try:
        yield path
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: not a saved {what} ({exc.filename} missing)") from None
    except (ValueError, TypeError, KeyError, OSError, RuntimeError) as exc:
        # RuntimeError: torch's load_state_dict on weights of another shape
        raise ModelError(f"{path}: damaged {what} ({exc})") from None
