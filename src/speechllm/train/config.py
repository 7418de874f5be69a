"""A training config file, read and checked before any model loads.

    {"model": {"approach": "latent", "encoder": "whisper-tiny.en", "window_seconds": 4,
               "llm": "gemma-3-270m", "adapter": {"kind": "stack", "stack": 4}},
     "data": {"manifest": "data/digits/manifest.jsonl"},
     "train": {"output": "runs/digits", "steps": 400, "batch_size": 8, "lr": 0.001}}

`model.approach` picks the model from `MODEL_KINDS` ("latent" when absent). Paths are relative
to the config file, wherever it is run from.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from speechllm.data import Item
from speechllm.registry import UnknownName
from speechllm.train.base import (
    DEFAULT_TASK,
    MODEL_KINDS,
    ConfigError,
    ModelConfig,
    Trainable,
    TrainSettings,
    read_settings,
)


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig
    manifest: Path | tuple[Path, ...]
    train: TrainSettings
    source: Path | None = None
    weights: tuple[float, ...] = ()  # per manifest: share of the examples drawn from it
    approach: str = "latent"  # the MODEL_KINDS name that builds `model`

    @property
    def manifests(self) -> tuple[Path, ...]:
        return self.manifest if isinstance(self.manifest, tuple) else (self.manifest,)

    def build(self) -> Trainable:
        return MODEL_KINDS.get(self.approach).build(self.model)

    def to_dict(self) -> dict[str, Any]:
        paths = [str(p) for p in self.manifests]
        data: dict[str, Any] = {"manifest": paths[0] if len(paths) == 1 else paths}
        if self.weights:
            data["weights"] = list(self.weights)
        model = self.model.to_dict()
        if self.approach != "latent":
            model = {"approach": self.approach, **model}
        return {"model": model, "data": data, "train": asdict(self.train)}


def load_config(path: str | os.PathLike[str]) -> TrainConfig:
    """Read and check a training config without loading any model; ConfigError names the
    offending field."""
    source = Path(path)
    try:
        raw = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such config file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a JSON object with model, data and train")
    for key in raw:
        if key not in ("model", "data", "train"):
            raise ConfigError(f"{key}: unknown section; expected model, data, train")
    section = raw.get("model", {})
    if not isinstance(section, dict):
        raise ConfigError("model: expected an object")
    approach = section.get("approach", "latent")
    try:
        kind = MODEL_KINDS.get(approach)
        model = kind.read({k: v for k, v in section.items() if k != "approach"},
                          source.parent)
    except UnknownName as exc:
        raise ConfigError(f"model.approach: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    if model.lora_rank < 0:
        raise ConfigError(f"model.lora_rank: must be >= 0, got {model.lora_rank}")
    data = raw.get("data")
    given = data.get("manifest") if isinstance(data, dict) else None
    if isinstance(given, str):
        given = [given]
    if not (isinstance(given, list) and given and all(isinstance(g, str) for g in given)):
        raise ConfigError("data.manifest: required, the training manifest's path (or a list "
                          "of them)")
    paths = tuple((source.parent / g).resolve() for g in given)
    for found in paths:
        if not found.is_file():
            raise ConfigError(f"data.manifest: {found} not found")
    manifest = paths[0] if len(paths) == 1 else paths
    weights = data.get("weights", []) if isinstance(data, dict) else []
    if weights and (not isinstance(weights, list) or len(weights) != len(paths) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in weights)):
        raise ConfigError(f"data.weights: expected {len(paths)} positive numbers, one per "
                          f"manifest, got {weights!r}")
    settings = read_settings(raw.get("train", {}))
    if settings.unfreeze_encoder and not model.tunable_encoder:
        raise ConfigError(f"train.unfreeze_encoder: model.encoder "
                          f"{getattr(model, 'encoder', None)!r} is not trainable (a frozen "
                          "CTranslate2 model, or none); give a Hugging Face Whisper folder "
                          "to fine-tune")
    settings = replace(settings, output=str((source.parent / settings.output).resolve()))
    return TrainConfig(model, manifest, settings, source, tuple(float(w) for w in weights),
                       approach)


def examples(items: list[Item], approach: str, model: ModelConfig
             ) -> list[tuple[int, str, Any]]:
    """(item index, instruction, answer) for every task of every item, as the `approach`
    model configured by `model` reads them; ConfigError names the item a task cannot be used
    from."""
    read = MODEL_KINDS.get(approach).example
    out: list[tuple[int, str, Any]] = []
    for n, item in enumerate(items):
        for task in item.fields.get("tasks") or [DEFAULT_TASK]:
            try:
                out.append((n, *read(model, item, task)))
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
    return out
