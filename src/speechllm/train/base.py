"""What the trainer needs from a model, and the settings every run shares.

The trainer knows no approach: a latent model and a token model each implement `Trainable`,
and `MODEL_KINDS` names the approaches a training config's `"model": {"approach": ...}` may
pick (a registry like every other component kind; entries are imported on first use).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from speechllm.audio import Audio
from speechllm.config import from_dict
from speechllm.data import Item
from speechllm.errors import SpeechLLMError
from speechllm.lm import precision
from speechllm.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor, nn

DEFAULT_TASK: Mapping[str, Any] = {"instruction": "Transcribe the audio exactly."}


class ConfigError(SpeechLLMError, ValueError):
    """A training config that cannot be used; the message names the field."""

    exit_code = 2


class ModelConfig(Protocol):
    """The part of a model's config the trainer reads."""

    @property
    def llm(self) -> str:
        """The LLM's embedded name or path (fetched before training when embedded)."""
        ...

    @property
    def lora_rank(self) -> int: ...

    @property
    def lora_modules(self) -> tuple[str, ...]: ...

    @property
    def tunable_encoder(self) -> bool:
        """Whether `train.unfreeze_encoder` can apply (a transformers encoder)."""
        ...

    def to_dict(self) -> dict[str, Any]: ...


class Trainable(Protocol):
    """A model the trainer can train: `LatentSpeechLM` and `TokenSpeechLM` implement it.

    `states` are whatever the model reads for a clip, padded to (B, T, ...) with `lengths`
    (B,): encoder states for a latent model, unit ids for a token model."""

    config: Any  # the approach's own config type, a ModelConfig
    tuned_encoder: bool  # set by the trainer when the encoder's weights train

    lm: nn.Module  # the causal LM; LoRA wraps it (`speechllm.lm.lora.add_lora` replaces it)

    @property
    def adapter(self) -> nn.Module:
        """The new weights that always train."""
        ...

    def trainable_encoder(self) -> nn.Module | None:
        """The encoder's torch module when it can train, else None (frozen)."""
        ...

    def encode_audio(self, audios: Sequence[Audio]) -> tuple[Tensor, Tensor]:
        """(states, lengths) through the encoder as it is now (trainable or not)."""
        ...

    def encode_clips(self, paths: Sequence[str | os.PathLike[str]]) -> tuple[Tensor, Tensor]:
        """(states, lengths) of audio files through the frozen encoder."""
        ...

    def cache_key(self) -> str | None:
        """What frozen encodings depend on, for keeping them on disk between runs; None:
        too big to keep, computed again each run."""
        ...

    def loss(self, states: Tensor, lengths: Tensor, instructions: Sequence[str],
             answers: Sequence[Any]) -> Tensor:
        """The mean cross-entropy of the answers' tokens (a scalar tensor)."""
        ...

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path: ...


@dataclass(frozen=True)
class ModelKind:
    """One trainable approach: reads its `model` section, reads the manifest's tasks for it
    (before any model loads, so a bad item fails at once) and builds the model."""

    read: Callable[[dict[str, Any], Path], ModelConfig]  # (section, config's folder); ValueError
    # (model config, item, one of the item's tasks) -> (instruction, answer); ValueError: why
    # the task cannot be trained on
    example: Callable[[Any, Item, Mapping[str, Any]], tuple[str, Any]]
    build: Callable[[Any], Trainable]


MODEL_KINDS: Registry[ModelKind] = Registry("trainable approach")
MODEL_KINDS.register("latent", "speechllm.latent.training:LATENT")
MODEL_KINDS.register("tokens", "speechllm.tokens.training:TOKENS")


def text_task(item: Item, task: Mapping[str, Any]) -> tuple[str, str]:
    """A plain task: its instruction and its answer (by default the item's text)."""
    answer = task.get("answer", item.text)
    if not isinstance(task.get("instruction"), str) or answer is None:
        raise ValueError(f"{item.audio}: each task needs an instruction and an answer (or "
                         "the item's text)")
    return task["instruction"], str(answer)


@dataclass(frozen=True)
class TrainSettings:
    output: str = "runs/latent"
    steps: int = 300
    batch_size: int = 8  # per process
    lr: float = 1e-3
    warmup: int = 20
    weight_decay: float = 0.0
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    lora_lr: float = 2e-4
    unfreeze_encoder: bool = False  # needs a Hugging Face Whisper folder as model.encoder
    encoder_lr: float = 1e-5
    # bfloat16 matrix products in each step: "auto" where the device has them in hardware
    # (a GPU with bf16, a CPU with AVX-512 BF16 or AMX), "bf16" always, "off" never
    autocast: str = "off"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if self.autocast not in precision.CHOICES:
            raise ValueError(f"autocast: one of {', '.join(precision.CHOICES)}, got "
                             f"{self.autocast!r}")


def read_settings(data: Any) -> TrainSettings:
    try:
        return from_dict(TrainSettings, data, "train")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class TrainResult:
    output: Path
    steps: int
    final_loss: float
    seconds_per_step: float
    peak_rss_mb: float
    loss_curve: Path
    processes: int = 1
    losses: tuple[float, ...] = ()
    precision: str = "off"  # what train.autocast resolved to on this device: "bf16" or "off"
    sharding: str = ""  # several processes: "DDP" (whole copies), "FSDP" or "DeepSpeed"
