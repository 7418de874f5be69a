"""Approach-agnostic training: a latent model and a token model each implement `Trainable`,
and `speechllm train CONFIG` picks the approach from the config's `model.approach`."""

from speechllm.train.base import (
    MODEL_KINDS,
    ConfigError,
    ModelKind,
    Trainable,
    TrainResult,
    TrainSettings,
)
from speechllm.train.config import TrainConfig, examples, load_config
from speechllm.train.loop import train

__all__ = ["MODEL_KINDS", "ConfigError", "ModelKind", "TrainConfig", "TrainResult",
           "TrainSettings", "Trainable", "examples", "load_config", "train"]
