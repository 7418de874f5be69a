"""A token model's teacher-forced units, as `alternates` for `UnitToSpeech.train`: half the
decoder's examples read what the token model predicts at each unit instead of the clip's own
units, so the decoder learns to render the model's near misses."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from speechllm.data import Item
from speechllm.errors import ModelError
from speechllm.tokens.semantic import KMeansUnits


class TeacherForced:
    def __init__(self, model: str | os.PathLike[str], units: KMeansUnits,
                 items: Sequence[Item], progress: Callable[[], None] | None = None) -> None:
        from speechllm.tokens.model import SpeakTarget, TokenSpeechLM

        self.lm = TokenSpeechLM.from_pretrained(model)
        if self.lm.units.config.k != units.config.k or \
                not (self.lm.units.centroids == units.centroids).all():
            raise ModelError(f"{model} writes other units than --units")
        self.targets = [SpeakTarget.from_item(item) for item in items]
        self.progress = progress
        self.same = self.total = 0

    def __call__(self, n: int, clip: Any) -> list[int]:
        predicted: list[int] = self.lm.teacher_forced_units(self.targets[n], clip.tolist())
        self.same += sum(int(a == b) for a, b in zip(predicted, clip.tolist(), strict=True))
        self.total += len(predicted)
        if self.progress:
            self.progress()
        return predicted

    def agreement(self) -> float:
        """The share of frames where the model's unit is the clip's."""
        return self.same / max(1, self.total)
