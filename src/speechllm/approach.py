"""Build any approach from a plain configuration (a dict, as read from JSON).

    {"approach": "cascade", "asr": "whisper-tiny.en", "postprocess": "rescore"}

The evaluation harness, its worker pools and Ray actors build their `SpeechLM` through here,
so a run's configuration is all a worker needs, and the journal records exactly what ran.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from speechllm.speechlm import SpeechLM


def _cascade(fields: dict[str, Any]) -> SpeechLM:
    from speechllm.cascade.build import CascadeSpec, build_cascade
    return build_cascade(CascadeSpec(**fields))


def _cascade_fields() -> set[str]:
    from speechllm.cascade.build import CascadeSpec
    return {f.name for f in dataclasses.fields(CascadeSpec)}


def _latent(fields: dict[str, Any]) -> SpeechLM:
    from speechllm.latent.pretrained import load
    model: SpeechLM = load(fields["path"], fields.get("engine", "torch"),
                           **{k: v for k, v in fields.items() if k.endswith("_model")})
    return model


def _tokens(fields: dict[str, Any]) -> SpeechLM:
    from speechllm.tokens.model import TokenSpeechLM
    model: SpeechLM = TokenSpeechLM.from_pretrained(fields["path"])
    return model


# name -> (builder, names of the fields it accepts)
APPROACHES: dict[str, tuple[Callable[[dict[str, Any]], SpeechLM], Callable[[], set[str]]]] = {
    "cascade": (_cascade, _cascade_fields),
    # path: a folder written by LatentSpeechLM.save_pretrained, an Ultravox or a Qwen2-Audio
    # checkpoint; engine: "torch" or "llama.cpp" (speechllm's own models); audio_model /
    # text_model: local base models for an Ultravox checkpoint that saved only its projector
    "latent": (_latent, lambda: {"path", "engine", "audio_model", "text_model"}),
    # path: a folder written by TokenSpeechLM.save_pretrained (speechllm train latent with
    # "model": {"approach": "tokens", ...})
    "tokens": (_tokens, lambda: {"path"}),
}


def check(config: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration's fields, checked without loading any model; ValueError names the
    offending field."""
    name = config.get("approach", "cascade")
    if name not in APPROACHES:
        raise ValueError(f"approach: unknown {name!r}; choose one of: {', '.join(APPROACHES)}")
    fields = {k: v for k, v in config.items() if k != "approach"}
    allowed = APPROACHES[name][1]()
    for key in fields:
        if key not in allowed:
            raise ValueError(f"{key}: not a {name} setting; known: {', '.join(sorted(allowed))}")
    return fields


def build(config: Mapping[str, Any]) -> SpeechLM:
    fields = check(config)
    return APPROACHES[config.get("approach", "cascade")][0](fields)


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
