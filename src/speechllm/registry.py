"""Named components: one `Registry` per component kind (ASR, LLM, TTS, VAD, tokenizer, adapter,
task, approach), each created in its package's base module.

The CLI, the server and config files look names up here, so a new backend is one new module
plus one `register` line. Entries may be given as "module:attribute" strings and are imported on
first use: listing the names (for `--help` or an error) never loads torch or a model library.

    TTS_BACKENDS.register("kokoro", "speechllm.tts.kokoro:kokoro_tts")
    TTS_BACKENDS.get("kokoro")("af_heart")
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownName(ValueError):
    """A name that is not registered; the message lists the ones that are."""


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind  # what an entry is, for messages: "TTS backend"
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, target: T | str) -> None:
        """Add `name`; `target` is the factory itself or "module:attribute". A name is taken
        once: registering it again is a mistake, not an override."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if isinstance(target, str) and ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: a lazy entry is 'module:attribute', "
                             f"got {target!r}")
        self._entries[name] = target

    def get(self, name: str) -> T:
        try:
            target = self._entries[name]
        except KeyError:
            raise UnknownName(f"unknown {self.kind} {name!r}; choose one of: "
                              f"{', '.join(self._entries)}") from None
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            found: Any = importlib.import_module(module)
            for part in attribute.split("."):  # "module:Class.load" names a classmethod
                found = getattr(found, part)
            self._entries[name] = found
            loaded: T = found
            return loaded
        return target

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
