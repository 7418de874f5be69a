"""The tools of the spoken tool-call benchmark (task `tools`): ten voice-assistant functions
with typed arguments (numbers, integers with ranges, enums, booleans, free text, optional
fields with defaults). An item may bring its own tools instead (field "tools")."""

from __future__ import annotations

from typing import Any

from speechllm.tools import Tool

ROOMS = ["kitchen", "living room", "bedroom", "bathroom", "office"]
CURRENCIES = ["USD", "EUR", "GBP", "JPY"]
# arguments compared as free text (tasks.LOOSE_F1), not character for character
FREE_TEXT = frozenset({"label", "query", "message", "item"})


def _tool(name: str, description: str, properties: dict[str, Any],
          required: list[str]) -> Tool:
    return Tool(name, description, {"type": "object", "properties": properties,
                                    "required": required})


CATALOG: tuple[Tool, ...] = (
    _tool("get_weather", "The weather forecast for a city.", {
        "city": {"type": "string", "description": "the city's name"},
        "day": {"type": "string", "enum": ["today", "tomorrow"], "default": "today"}},
        ["city"]),
    _tool("set_timer", "Start a countdown timer.", {
        "minutes": {"type": "number", "description": "how long the timer runs, in minutes"},
        "label": {"type": "string", "description": "what the timer is for"}}, ["minutes"]),
    _tool("set_alarm", "Set an alarm for a time of day (24-hour clock).", {
        "hour": {"type": "integer", "minimum": 0, "maximum": 23},
        "minute": {"type": "integer", "minimum": 0, "maximum": 59, "default": 0}}, ["hour"]),
    _tool("play_music", "Play music: a song, an artist, an album or a genre.", {
        "query": {"type": "string", "description": "what to play"},
        "shuffle": {"type": "boolean", "default": False}}, ["query"]),
    _tool("send_message", "Send a text message to a contact.", {
        "contact": {"type": "string", "description": "who receives it"},
        "message": {"type": "string", "description": "the message's text"}},
        ["contact", "message"]),
    _tool("set_lights", "Set the brightness of the lights in a room.", {
        "room": {"type": "string", "enum": ROOMS},
        "level": {"type": "integer", "minimum": 0, "maximum": 100,
                  "description": "brightness in percent; 0 turns them off"}},
        ["room", "level"]),
    _tool("set_thermostat", "Set the heating's target temperature.", {
        "temperature": {"type": "number"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}},
        ["temperature"]),
    _tool("add_to_list", "Add an item to the shopping list or the to-do list.", {
        "list_name": {"type": "string", "enum": ["shopping", "todo"]},
        "item": {"type": "string", "description": "what to add"}}, ["list_name", "item"]),
    _tool("convert_currency", "Convert an amount of money between currencies.", {
        "amount": {"type": "number"},
        "source": {"type": "string", "enum": CURRENCIES, "description": "from this currency"},
        "target": {"type": "string", "enum": CURRENCIES, "description": "into this currency"}},
        ["amount", "source", "target"]),
    _tool("call_contact", "Start a phone call with a contact.", {
        "contact": {"type": "string", "description": "who to call"}}, ["contact"]),
)
