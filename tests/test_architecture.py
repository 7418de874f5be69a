"""The package's shape, as docs/architecture.md describes it: the approaches stay apart, no
module imports back into one that imports it, and long modules say why they are long."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "speechllm"


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool, typing: bool = True) -> set[str]:
    """speechllm modules `path` imports (all, or only at import time: not inside functions,
    not under TYPE_CHECKING; `typing` False leaves out those under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            for_types = isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            if for_types and not typing:
                continue
            later = deferred or for_types or isinstance(child, (ast.FunctionDef,
                                                                 ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.module and not (
                    top_level_only and later):
                if child.module.startswith("speechllm"):
                    found.add(child.module)
                    found.update(f"{child.module}.{a.name}" for a in child.names)
            elif isinstance(child, ast.Import) and not (top_level_only and later):
                found.update(a.name for a in child.names if a.name.startswith("speechllm"))
            visit(child, later)

    visit(tree, False)
    return found


MODULES = {_module(p): p for p in SRC.rglob("*.py")}


@pytest.mark.parametrize(("one", "other"), [("latent", "tokens"), ("tokens", "latent"),
                                            ("cascade", "latent"), ("cascade", "tokens"),
                                            ("latent", "cascade"), ("tokens", "cascade")])
def test_approaches_never_import_each_other(one, other):
    offenders = {name: sorted(i for i in _imports(path, False)
                              if i.startswith(f"speechllm.{other}"))
                 for name, path in MODULES.items() if name.startswith(f"speechllm.{one}")}
    assert not {k: v for k, v in offenders.items() if v}


def test_shared_packages_import_no_approach_at_import_time():
    """lm/, train/, encoders and data serve every approach; the trainer finds an approach
    through its registry, by name, only when a config asks for it."""
    shared = ("speechllm.lm", "speechllm.train", "speechllm.encoders", "speechllm.data")
    for name, path in MODULES.items():
        if name.startswith(shared):
            bad = [i for i in _imports(path, True)
                   if i.startswith(("speechllm.latent", "speechllm.tokens",
                                    "speechllm.cascade"))]
            assert not bad, (name, bad)


def test_no_import_cycles_even_through_deferred_imports():
    """A deferred import (inside a function) that closes a circle hides a tangle rather than
    removing it; only imports for type checking may point back."""
    graph = {name: {i for i in _imports(path, False, typing=False) if i in MODULES
                    and i != name} for name, path in MODULES.items()}
    # a package's __init__ importing its own modules is how packages work, not a cycle
    for name in graph:
        graph[name] = {i for i in graph[name] if not name.startswith(i + ".")}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt):], nxt] if nxt in trail else [nxt])
            elif nxt not in state:
                walk(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert not cycles


def test_long_modules_say_why_they_are_long():
    long = {name: len(path.read_text(encoding="utf-8").splitlines())
            for name, path in MODULES.items()
            if len(path.read_text(encoding="utf-8").splitlines()) > 400}
    unexplained = [name for name in long
                   if "Long because" not in (ast.get_docstring(ast.parse(
                       MODULES[name].read_text(encoding="utf-8"))) or "")]
    assert not unexplained, long
