"""Build any approach from a plain configuration (a dict, as read from JSON).

    {"approach": "cascade", "asr": "whisper-tiny.en", "postprocess": "rescore",
     "options": {"nbest": 3}}

The evaluation harness, its worker pools and Ray actors build their `SpeechLM` through here,
so a run's configuration is all a worker needs, and the journal records exactly what ran.
Approaches are looked up in `APPROACHES`, a registry like every other component kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from speechllm.config import from_dict
from speechllm.registry import Registry
from speechllm.speechlm import AnswerOptions, SpeechLM


@dataclass(frozen=True)
class Approach:
    """How to check a configuration's fields (without loading a model) and build from them."""

    known: Callable[[], frozenset[str]]  # the fields it takes
    check: Callable[[dict[str, Any]], None]  # raises ValueError naming the field
    build: Callable[[dict[str, Any]], SpeechLM]


def _cascade_fields() -> frozenset[str]:
    from speechllm.cascade.build import CascadeSpec
    return frozenset(f.name for f in dataclasses.fields(CascadeSpec))


def _cascade_check(fields: dict[str, Any]) -> None:
    from speechllm.cascade.build import spec_from_dict
    spec_from_dict(fields)


def _cascade(fields: dict[str, Any]) -> SpeechLM:
    from speechllm.cascade.build import build_cascade, spec_from_dict
    return build_cascade(spec_from_dict(fields))


def _options(model: Any, fields: dict[str, Any]) -> None:
    """An end-to-end model's `options` (AnswerOptions) and, for a token model, its decoding
    setting `min_word_units`, from the approach config."""
    options = dict(fields.get("options") or {})
    floor = options.pop("min_word_units", None)
    model.options = from_dict(AnswerOptions, options, "options")
    if floor is not None:
        model.config = dataclasses.replace(model.config, min_word_units=floor)


def _latent(fields: dict[str, Any]) -> SpeechLM:
    from speechllm.latent.pretrained import load
    model: SpeechLM = load(fields["path"], fields.get("engine", "torch"),
                           **{k: v for k, v in fields.items() if k.endswith("_model")})
    _options(model, fields)
    return model


def _tokens(fields: dict[str, Any]) -> SpeechLM:
    from speechllm.tokens.model import TokenSpeechLM
    model: SpeechLM = TokenSpeechLM.from_pretrained(fields["path"])
    _options(model, fields)
    return model


def _end_to_end_check(options_allowed: frozenset[str]) -> Callable[[dict[str, Any]], None]:
    def check(fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            if key != "options" and not isinstance(value, str):
                raise ValueError(f"{key}: expected a string, got {value!r}")
        if "path" not in fields:
            raise ValueError("path: required, the saved model's folder")
        options = fields.get("options", {})
        if not isinstance(options, dict):
            raise ValueError(f"options: expected an object, got {options!r}")
        extra = dict(options)
        floor = extra.pop("min_word_units", None)
        if floor is not None and ("min_word_units" not in options_allowed or not isinstance(
                floor, int) or isinstance(floor, bool) or floor < 0):
            raise ValueError("options.min_word_units: a token model's whole number of units "
                             f">= 0, not {floor!r}")
        from_dict(AnswerOptions, extra, "options")
    return check


APPROACHES: Registry[Approach] = Registry("approach")
APPROACHES.register("cascade", Approach(_cascade_fields, _cascade_check, _cascade))
# path: a folder written by LatentSpeechLM.save_pretrained, an Ultravox or a Qwen2-Audio
# checkpoint; engine: "torch" or "llama.cpp" (speechllm's own models); audio_model /
# text_model: local base models for an Ultravox checkpoint that saved only its projector
# options: AnswerOptions (max_tokens, instruction) for a request that sets neither
APPROACHES.register("latent", Approach(
    lambda: frozenset({"path", "engine", "audio_model", "text_model", "options"}),
    _end_to_end_check(frozenset()), _latent))
# path: a folder written by TokenSpeechLM.save_pretrained (`speechllm train` with
# "model": {"approach": "tokens", ...})
# options: AnswerOptions and min_word_units (the token model's spoken-word floor)
APPROACHES.register("tokens", Approach(lambda: frozenset({"path", "options"}),
                                       _end_to_end_check(frozenset({"min_word_units"})),
                                       _tokens))


def check(config: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration's fields, checked without loading any model; ValueError names the
    offending field."""
    name = config.get("approach", "cascade")
    if not isinstance(name, str):
        raise ValueError(f"approach: expected a name, got {name!r}")
    if name not in APPROACHES:
        raise ValueError(f"approach: unknown {name!r}; choose one of: {', '.join(APPROACHES)}")
    approach = APPROACHES.get(name)
    fields = {k: v for k, v in config.items() if k != "approach"}
    allowed = approach.known()
    for key in fields:
        if key not in allowed:
            raise ValueError(f"{key}: not a {name} setting; known: {', '.join(sorted(allowed))}")
    approach.check(fields)
    return fields


def build(config: Mapping[str, Any]) -> SpeechLM:
    fields = check(config)
    return APPROACHES.get(config.get("approach", "cascade")).build(fields)


@dataclass(frozen=True)
class Factory:
    """A picklable `() -> SpeechLM`: what a worker thread, process or Ray actor calls."""

    config: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Factory:
        check(config)
        return cls(tuple(sorted(config.items())))

    def __call__(self) -> SpeechLM:
        return build(dict(self.config))
