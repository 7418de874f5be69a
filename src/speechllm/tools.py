"""Tool calling: the tools a turn may call, the calls a model makes, and checking a call's
arguments against its tool's JSON schema.

The shapes follow OpenAI's chat completions (`{"type": "function", "function": {...}}`), so
tools pass unchanged between the HTTP API, realtime sessions, the Python API and any
OpenAI-compatible LLM server. Running the calls (plain Python functions) is
`speechllm.toolbox`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from speechllm.errors import SpeechLLMError

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names
MAX_SCHEMA_CHARS = 16_000  # one tool's JSON schema; larger ones would flood a small model
# of one tool result shown to the model: ~1000 tokens, a quarter of the embedded LLM's window
MAX_OUTPUT_CHARS = 4_000


class ToolError(SpeechLLMError, ValueError):
    """A tool definition, a tool choice, or a model's call that cannot be used."""

    exit_code = 2


class ToolCallError(ToolError):
    """The model called a tool that was not offered, or with arguments its schema refuses."""


@dataclass(frozen=True)
class Tool:
    """A function the model may call: its name, what it does, and its parameters as a JSON
    schema of type object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}})

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME.match(self.name):
            raise ToolError(f"tool name {self.name!r}: 1-64 letters, digits, '_' or '-'")
        if not isinstance(self.description, str):
            raise ToolError(f"tool {self.name}: description must be a string")
        check_schema(self.parameters, f"tool {self.name}")

    @classmethod
    def of(cls, value: object) -> Tool:
        """From OpenAI's `{"type": "function", "function": {name, description, parameters}}`
        (the realtime API's flat `{"type": "function", "name": ...}` too)."""
        if not isinstance(value, Mapping) or value.get("type", "function") != "function":
            raise ToolError(f"a tool must be {{\"type\": \"function\", ...}}; got {value!r}"[:200])
        spec = value.get("function", value)
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise ToolError("a tool's function needs a name")
        parameters = spec.get("parameters") or {"type": "object", "properties": {}}
        return cls(spec["name"], spec.get("description") or "", parameters)

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name,
                                                 "description": self.description,
                                                 "parameters": dict(self.parameters)}}


def check_schema(schema: object, where: str) -> None:
    """ToolError unless `schema` is a valid JSON schema describing an object."""
    if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
        raise ToolError(f"{where}: parameters must be a JSON schema of type object")
    try:
        text = json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise ToolError(f"{where}: parameters are not JSON ({exc})") from None
    if len(text) > MAX_SCHEMA_CHARS:
        raise ToolError(f"{where}: parameters schema of {len(text)} characters; the cap is "
                        f"{MAX_SCHEMA_CHARS}")
    import jsonschema  # a core dependency; imported here to keep `import speechllm` light
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ToolError(f"{where}: invalid parameters schema: {exc.message}") from None


@dataclass(frozen=True)
class UseTool:
    """`tool_choice` naming one function: the model must call it."""

    name: str


ToolChoice = Literal["auto", "none", "required"] | UseTool


def tool_choice_of(value: object, tools: Sequence[Tool]) -> ToolChoice:
    """OpenAI's `tool_choice` ("auto", "none", "required", or {"type": "function",
    "function": {"name": ...}}; the realtime API's {"type": "function", "name": ...})."""
    if value is None:
        return "auto"
    if value in ("auto", "none", "required"):
        choice: ToolChoice = value
    elif isinstance(value, Mapping) and value.get("type") == "function":
        spec = value.get("function", value)
        name = spec.get("name") if isinstance(spec, Mapping) else None
        if not isinstance(name, str):
            raise ToolError("tool_choice: a function choice needs a name")
        choice = UseTool(name)
    else:
        raise ToolError(f"tool_choice: 'auto', 'none', 'required' or a function; got {value!r}")
    check_choice(choice, tools)
    return choice


def check_choice(choice: ToolChoice, tools: Sequence[Tool]) -> None:
    if choice == "required" and not tools:
        raise ToolError("tool_choice 'required' needs tools")
    if isinstance(choice, UseTool) and choice.name not in {t.name for t in tools}:
        raise ToolError(f"tool_choice names {choice.name!r}, which is not among the tools")


def fit_output(text: str) -> str:
    """A tool's result cut to what the model can read, saying so."""
    if len(text) <= MAX_OUTPUT_CHARS:
        return text
    return text[:MAX_OUTPUT_CHARS] + f" ... [cut: {len(text)} characters in all]"


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class ToolCall:
    """A call the model made: `arguments` is JSON text that fits the tool's schema."""

    id: str
    name: str
    arguments: str

    def args(self) -> dict[str, Any]:
        value = json.loads(self.arguments or "{}")
        return value if isinstance(value, dict) else {}

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}

    @classmethod
    def of(cls, value: object) -> ToolCall:
        """From an assistant message's `tool_calls` entry."""
        spec = value.get("function") if isinstance(value, Mapping) else None
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise ToolError("a tool_calls entry needs function.name")
        arguments = spec.get("arguments", "{}")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        call_id = value.get("id") if isinstance(value, Mapping) else None
        return cls(call_id if isinstance(call_id, str) and call_id else new_call_id(),
                   spec["name"], arguments)


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a call's arguments as the model writes them (the first piece of each call
    may be empty: it announces the call's id and name)."""

    index: int
    id: str
    name: str
    arguments: str


def tools_of(value: object) -> tuple[Tool, ...]:
    """A request's `tools` list (OpenAI's shape) as Tools; ToolError names the bad one."""
    if not isinstance(value, list):
        raise ToolError("tools: expected a list")
    out = []
    for n, item in enumerate(value):
        try:
            out.append(Tool.of(item))
        except ToolError as exc:
            raise ToolError(f"tools[{n}]: {exc}") from None
    if len({t.name for t in out}) != len(out):
        raise ToolError("tools: two tools share a name")
    return tuple(out)


# -- checking a model's call -----------------------------------------------------------------

def _coerce(value: Any, schema: Mapping[str, Any]) -> Any:
    """The small repairs a model's slip needs: "10" for 10, 10 for "10", an enum in the
    wrong case, one value for a list. Anything else is left for the validator to refuse."""
    kind = schema.get("type")
    if "enum" in schema and isinstance(value, str) and value not in schema["enum"]:
        folded = {str(e).lower(): e for e in schema["enum"]}
        value = folded.get(value.strip().lower(), value)
    if kind in ("integer", "number") and isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return value
        if kind == "number":
            return int(number) if number.is_integer() else number
        return int(number) if number.is_integer() else value
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "string" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if kind == "boolean" and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if kind == "array":
        if not isinstance(value, list):
            value = [value]
        items = schema.get("items")
        if isinstance(items, Mapping):
            value = [_coerce(v, items) for v in value]
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties") or {}
        value = {k: _coerce(v, props[k]) if k in props else v for k, v in value.items()
                 if k in props or schema.get("additionalProperties", True) is not False}
    return value


def check_call(name: str, arguments: str | Mapping[str, Any], tools: Sequence[Tool],
               call_id: str | None = None) -> ToolCall:
    """The model's call, its arguments repaired where the slip is unambiguous; ToolCallError
    for an unknown tool, arguments that are not a JSON object, or ones the schema refuses."""
    tool = next((t for t in tools if t.name == name), None)
    if tool is None:
        offered = ", ".join(t.name for t in tools) or "none"
        raise ToolCallError(f"the model called {name!r}, which is not a tool here "
                            f"(offered: {offered})"[:300])
    if isinstance(arguments, str):
        try:
            value = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ToolCallError(f"the model's arguments for {name} are not JSON ({exc}): "
                                f"{arguments[:120]!r}") from None
    else:
        value = dict(arguments)
    if not isinstance(value, dict):
        raise ToolCallError(f"the model's arguments for {name} are not a JSON object")
    value = _coerce(value, tool.parameters)
    import jsonschema
    problem = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(tool.parameters).iter_errors(value))
    if problem is not None:
        where = ".".join(str(p) for p in problem.absolute_path) or "arguments"
        raise ToolCallError(f"the model's call to {name} does not fit its schema: "
                            f"{where}: {problem.message}"[:300])
    return ToolCall(call_id or new_call_id(), name, json.dumps(value, ensure_ascii=False))


def _unfenced(head: str) -> str:
    """A reply's start without a Markdown code fence (a coder model fences its JSON)."""
    if head.startswith("```"):
        head = head[3:]
        head = head[4:] if head.startswith("json") else head
    return head.lstrip()


def starts_call(head: str) -> bool:
    """Whether the start of a reply begins a tool call (the `<tool_call>` token itself is
    special and may not show in the text)."""
    return _unfenced(head).startswith(("{", "<tool_call>"))


def may_start_call(head: str) -> bool:
    """Whether the start could still become a call (hold it back a little longer)."""
    rest = _unfenced(head)
    return starts_call(head) or "<tool_call>".startswith(rest) or "```json".startswith(head) \
        or (head.startswith("```") and not rest)


def calls_in_text(text: str) -> list[tuple[str, str | dict[str, Any]]]:
    """(name, arguments) of each call a model wrote as text (`<tool_call>{...}</tool_call>`
    or bare `{"name": ..., "arguments": ...}` objects); [] when the text is an answer."""
    body = text.replace("<tool_call>", "\n").replace("</tool_call>", "\n").strip()
    body = re.sub(r"^```(?:json)?|```$", "", body.strip()).strip()  # a fenced call
    if not body.startswith("{"):
        return []
    decoder, at = json.JSONDecoder(), 0
    found: list[tuple[str, str | dict[str, Any]]] = []
    while at < len(body):
        while at < len(body) and body[at] in " \n\r\t,":
            at += 1
        if at >= len(body):
            break
        try:
            value, at = decoder.raw_decode(body, at)
        except json.JSONDecodeError as exc:
            if found:  # the calls are whole; what follows them is not one
                break
            raise ToolCallError(f"the model began a tool call that is not JSON ({exc.msg}): "
                                f"{body[:120]!r}") from None
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            if found:  # e.g. a result the model imagined after its call
                break
            raise ToolCallError(f"the model's tool call has no name: {body[:120]!r}")
        arguments = value.get("arguments", value.get("parameters", {}))
        # anything but an object (or its JSON text) stays JSON, for check_call to refuse
        found.append((value["name"], arguments if isinstance(arguments, str | dict)
                      else json.dumps(arguments)))
    return found


def check_written_calls(text: str, tools: Sequence[Tool], named: str | None = None
                        ) -> list[ToolCall]:
    """The calls a model wrote as text, each checked (`check_call`); ToolCallError when the
    text holds none, or calls another tool than the one `named` by tool_choice."""
    found = calls_in_text(text)
    if not found:
        raise ToolCallError(f"the model was to call a tool but wrote {text[:120]!r}")
    if named is not None and any(name != named for name, _ in found):
        raise ToolCallError(f"tool_choice named {named!r}; the model called "
                            f"{', '.join(repr(n) for n, _ in found)}")
    return [check_call(name, arguments, tools) for name, arguments in found]
