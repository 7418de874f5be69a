"""The token model as the trainer sees it (`"model": {"approach": "tokens", ...}`): its config
section (paths relative to the config file), its manifest tasks (text answers, and `{"speak":
true}`: say the item's text as the clip's units) and its build."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from speechllm.data import Item
from speechllm.tokens.model import SPEAK_TASK, SpeakTarget, TokenLMConfig, TokenSpeechLM
from speechllm.train.base import ModelKind, text_task


def _read(section: dict[str, Any], folder: Path) -> TokenLMConfig:
    units = section.get("units")
    if isinstance(units, str):  # relative to the config file, like every path there
        section = {**section, "units": str((folder / units).resolve())}
    return TokenLMConfig.from_dict(section)


def _example(config: TokenLMConfig, item: Item, task: Mapping[str, Any]) -> tuple[str, Any]:
    if not task.get("speak"):
        return text_task(item, task)
    if not (item.text or "").strip():
        raise ValueError(f"{item.audio}: a speak task needs the item's text")
    target = SpeakTarget.from_item(item)  # ValueError for malformed "words"
    if config.interleave_words and not target.words:
        raise ValueError(f"model.interleave_words: the speak clip {item.audio} has no word "
                         "timings; add them with `speechllm tokens align MANIFEST` and train "
                         "on the manifest it writes")
    return SPEAK_TASK, target


TOKENS = ModelKind(_read, _example, TokenSpeechLM)
