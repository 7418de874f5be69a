"""Plain typed Python functions as tools: their schemas from annotations and docstrings, and
running the calls a model makes, with a time limit, errors returned to the model as data.

    def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
        '''Current weather in a city.

        Args:
            city: the city's name, e.g. "Lisbon".
        '''

    box = Toolbox([get_weather])
    response = converse(model, Request(audio=question, tools=box.tools), box)
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
import threading
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

from speechllm.errors import SpeechLLMError
from speechllm.speechlm import Message, Request, Response, SpeechLM
from speechllm.tools import Tool, ToolCall, ToolError, fit_output


@contextlib.contextmanager
def _cwd_on_path() -> Iterator[None]:
    here = os.getcwd()
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        yield
    finally:
        if added:
            sys.path.remove(here)


def _schema_of(kind: Any, where: str) -> dict[str, Any]:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is str:
        return {"type": "string"}
    if kind is bool:
        return {"type": "boolean"}
    if kind is int:
        return {"type": "integer"}
    if kind is float:
        return {"type": "number"}
    if origin is Literal:
        return {"type": "string" if all(isinstance(a, str) for a in args) else "number",
                "enum": list(args)}
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return {"type": "string", "enum": [str(m.value) for m in kind]}
    if origin in (list, tuple, Iterable) or kind in (list, tuple):
        item = args[0] if args else str
        return {"type": "array", "items": _schema_of(item, where)}
    if origin in (types.UnionType, typing.Union):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _schema_of(rest[0], where)
    if kind is dict or origin is dict:
        return {"type": "object"}
    raise ToolError(f"{where}: type {kind!r} has no JSON schema here (use str, int, float, "
                    "bool, Literal, an Enum, list or dict)")


def _parameter_docs(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {parameter: its line}) from a Google-style docstring."""
    lines = inspect.cleandoc(doc).splitlines()
    head, params, current = [], {}, None
    in_args = False
    for line in lines:
        if re.match(r"^(Args|Arguments|Parameters):\s*$", line.strip()):
            in_args = True
            continue
        if in_args:
            if m := re.match(r"^\s+(\w+)(?:\s*\(.*?\))?:\s*(.*)$", line):
                current = m.group(1)
                params[current] = m.group(2).strip()
            elif line.strip() and current and line.startswith("        "):
                params[current] += " " + line.strip()
            elif line.strip() and not line.startswith(" "):
                in_args = False
        if not in_args and not params:
            head.append(line)
    description = " ".join(" ".join(head).split())
    return description, params


def tool_of(function: Callable[..., Any]) -> Tool:
    """The tool a function describes: its name, its docstring's first part, and a parameter
    per argument (required unless it has a default)."""
    hints = typing.get_type_hints(function)
    description, docs = _parameter_docs(function.__doc__ or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, param in inspect.signature(function).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name not in hints:
            raise ToolError(f"{function.__name__}({name}): annotate it, so the model knows "
                            "what to pass")
        schema = _schema_of(hints[name], f"{function.__name__}({name})")
        if name in docs:
            schema["description"] = docs[name]
        properties[name] = schema
        if param.default is inspect.Parameter.empty:
            required.append(name)
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    return Tool(function.__name__, description, parameters)


@dataclass(frozen=True)
class ToolResult:
    call: ToolCall
    output: str  # JSON text handed back to the model
    ok: bool  # False: the tool failed, timed out or was unknown; `output` says which


class Toolbox:
    """Functions the model may call. `run` never raises: a failure, a time-out or an unknown
    name comes back as {"error": ...} for the model to read, so a session goes on.

    A function that overruns `timeout` keeps its thread (Python cannot stop a thread), but the
    conversation no longer waits for it."""

    def __init__(self, functions: Iterable[Callable[..., Any]], timeout: float = 10.0) -> None:
        self.functions = {f.__name__: f for f in functions}
        self.tools = tuple(tool_of(f) for f in self.functions.values())
        self.timeout = timeout

    @classmethod
    def from_module(cls, name: str, timeout: float = 10.0) -> Toolbox:
        """The public functions a module defines (its `__all__` if it has one); `name` is a
        module name or a path to a .py file."""
        try:
            if name.endswith(".py"):
                spec = importlib.util.spec_from_file_location("speechllm_user_tools", name)
                if spec is None or spec.loader is None:
                    raise ImportError(name)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            else:  # a module in the working folder too, as `python -m` would find it
                with _cwd_on_path():
                    module = importlib.import_module(name)
        except (ImportError, OSError, SyntaxError) as exc:
            raise ToolError(f"cannot import tools from {name!r}: {exc}") from None
        names = getattr(module, "__all__", None) or [
            n for n, v in vars(module).items()
            if inspect.isfunction(v) and v.__module__ == module.__name__ and not n.startswith("_")]
        functions = [getattr(module, n) for n in names]
        if not functions:
            raise ToolError(f"{name!r} defines no public functions to use as tools")
        return cls(functions, timeout)

    def run(self, call: ToolCall) -> ToolResult:
        function = self.functions.get(call.name)
        if function is None:
            return ToolResult(call, json.dumps({"error": f"no tool named {call.name!r}"}), False)
        try:
            args = call.args()
        except json.JSONDecodeError as exc:
            return ToolResult(call, json.dumps({"error": f"arguments not JSON: {exc}"}), False)
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["value"] = function(**args)
            except Exception as exc:  # handed to the model, never raised into the session
                box["error"] = f"{type(exc).__name__}: {exc}"

        worker = threading.Thread(target=work, name=f"tool-{call.name}", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            return ToolResult(call, json.dumps(
                {"error": f"{call.name} did not return within {self.timeout:g} s"}), False)
        if "error" in box:
            return ToolResult(call, json.dumps({"error": box["error"]}), False)
        return ToolResult(call, output_text(box.get("value")), True)


def output_text(value: Any) -> str:
    """A tool's result as JSON text of bounded size (non-JSON values as their str)."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(value)
    return fit_output(text)


def converse(model: SpeechLM, request: Request, toolbox: Toolbox, max_rounds: int = 4,
             on_result: Callable[[ToolResult], None] | None = None) -> Response:
    """Answer `request`, running the calls the model makes and handing it their results,
    until it answers without calling (at most `max_rounds` rounds of calls)."""
    if not request.tools:
        request = replace(request, tools=toolbox.tools)
    response = model.respond(request)
    for _ in range(max_rounds):
        if not response.tool_calls:
            return response
        results = [toolbox.run(call) for call in response.tool_calls]
        for result in results:
            if on_result is not None:
                on_result(result)
        history = (*response.history, *(Message("tool", r.output, tool_call_id=r.call.id)
                                         for r in results))
        request = replace(request, audio=None, text=None, history=history, context=None,
                          tool_choice="auto")
        response = model.respond(request)
    if response.tool_calls:
        raise SpeechLLMError(f"the model still called tools after {max_rounds} rounds")
    return response



NOT_RETURNED = "the user spoke again before this tool's result came back"


def pending_calls(history: tuple[Message, ...]) -> list[ToolCall]:
    """The calls of the last assistant turn whose results are not yet in `history`."""
    last = max((i for i, m in enumerate(history) if m.tool_calls), default=-1)
    if last < 0:
        return []
    answered = {m.tool_call_id for m in history[last + 1:] if m.role == "tool"}
    return [c for c in history[last].tool_calls if c.id not in answered]


def close_pending(history: tuple[Message, ...]) -> tuple[Message, ...]:
    """`history` with an error result for each call still pending: a conversation that goes
    on without a tool's result (the user spoke first) still shows the model every call
    answered, and a late result is refused rather than spliced into the past."""
    missing = pending_calls(history)
    return (*history, *(Message("tool", json.dumps({"error": NOT_RETURNED}),
                                tool_call_id=c.id) for c in missing))
