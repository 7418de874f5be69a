"""Example tools for `speechllm chat question.wav --tools examples/tools.py`: plain typed
functions; each docstring's first part and `Args:` lines become the schema the model sees."""

from __future__ import annotations

import datetime
from typing import Literal

# made-up readings: the example must run offline
_WEATHER = {"lisbon": (24, "sunny"), "paris": (14, "cloudy"), "london": (11, "raining"),
            "tokyo": (19, "clear"), "new york": (8, "windy")}


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
    """The current weather in a city.

    Args:
        city: the city's name, e.g. "Lisbon".
        unit: the temperature unit.
    """
    temp, sky = _WEATHER.get(city.strip().lower(), (18, "mild"))
    if unit == "fahrenheit":
        temp = round(temp * 9 / 5 + 32)
    return {"city": city, "temperature": temp, "unit": unit, "sky": sky}


def set_timer(minutes: float, label: str = "timer") -> dict:
    """Start a countdown timer.

    Args:
        minutes: how long the timer runs.
        label: what the timer is for.
    """
    ends = datetime.datetime.now() + datetime.timedelta(minutes=minutes)
    return {"label": label, "minutes": minutes, "ends_at": ends.strftime("%H:%M")}


def get_time() -> str:
    """The current local time."""
    return datetime.datetime.now().strftime("%H:%M")
