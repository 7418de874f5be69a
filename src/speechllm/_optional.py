"""Lazy imports of optional backends, failing with the exact install command."""

from __future__ import annotations

import importlib
from types import ModuleType

from speechllm.errors import MissingDependency


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise MissingDependency naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{module} is not installed ({exc}); install it with: pip install 'speechllm[{extra}]'"
        ) from exc
