"""The latent model as the trainer sees it (`"model": {"approach": "latent", ...}`, the
default): its config section, its manifest tasks (instruction -> text answer) and its build."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from speechllm.data import Item
from speechllm.latent.model import LatentConfig, LatentSpeechLM
from speechllm.train.base import ModelKind, text_task


def _read(section: dict[str, Any], folder: Path) -> LatentConfig:
    return LatentConfig.from_dict(section)


def _example(config: LatentConfig, item: Item, task: Mapping[str, Any]) -> tuple[str, Any]:
    if task.get("speak"):
        raise ValueError(f"{item.audio}: a speak task needs a token model "
                         '("model": {"approach": "tokens", ...})')
    return text_task(item, task)


LATENT = ModelKind(_read, _example, LatentSpeechLM)
