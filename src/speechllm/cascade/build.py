"""Assemble a cascade from names and paths (what the CLI and config files use).

Every component is looked up by name in its kind's registry (`ASR_BACKENDS`, `LLM_BACKENDS`,
`TTS_BACKENDS`, `VAD_BACKENDS`), and every pipeline option (`CascadeConfig`) can be set from a
config file through `options`:

    {"approach": "cascade", "asr": "whisper-tiny.en", "tts": "espeak", "voice": "en-gb",
     "options": {"stream_tts": false, "nbest": 3, "asr": {"window_seconds": 8},
                 "generation": {"max_tokens": 64}}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from speechllm.asr.base import ASR_BACKENDS
from speechllm.cascade.pipeline import CascadeConfig, CascadeSpeechLM
from speechllm.cascade.postprocess import GenerativeCorrector, NBestRescorer, PostProcessor
from speechllm.config import from_dict
from speechllm.llm.base import LLM_BACKENDS, ChatLLM
from speechllm.tts.base import TTS_BACKENDS, make_tts
from speechllm.vad.base import VAD_BACKENDS

PostName = Literal["none", "rescore", "correct"]

__all__ = ["CascadeSpec", "build_cascade", "make_llm", "make_tts", "spec_from_dict"]


@dataclass(frozen=True)
class CascadeSpec:
    asr: str = "whisper-base"  # embedded name or model folder, for `asr_backend`
    llm: str = "qwen2.5-0.5b-instruct"  # embedded name or GGUF path; with llm_url: server's model
    llm_url: str | None = None  # an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1
    tts: str | None = "piper"  # a TTS backend's name; None: text only
    voice: str | None = None
    vad: bool = True
    postprocess: PostName = "none"
    scorer: str = "gemma-3-270m"  # LM for postprocess="rescore"
    rescore_weight: float | None = None  # None: GatedRescoring's tuned weight
    asr_backend: str = "faster-whisper"
    llm_backend: str | None = None  # None: "openai" with llm_url, else "llama-cpp"
    vad_backend: str = "silero"
    options: CascadeConfig = field(default_factory=CascadeConfig)  # the pipeline's options

    def __post_init__(self) -> None:
        # names are checked here, before any model loads, so a typo fails at once
        for registry, name in ((ASR_BACKENDS, self.asr_backend), (VAD_BACKENDS, self.vad_backend),
                               (LLM_BACKENDS, self.llm_backend or "openai"),
                               (TTS_BACKENDS, self.tts or "piper")):
            if name not in registry:
                registry.get(name)  # raises UnknownName, listing the valid names
        if self.postprocess not in ("none", "rescore", "correct"):
            raise ValueError(f"postprocess: one of none, rescore, correct; got "
                             f"{self.postprocess!r}")


def spec_from_dict(data: dict[str, Any]) -> CascadeSpec:
    """A CascadeSpec from a config file's fields; ValueError names an unknown or ill-typed
    field (`options.asr.beam_size: expected int, got '5'`)."""
    return from_dict(CascadeSpec, data, "")


def make_llm(name: str, url: str | None = None, backend: str | None = None) -> ChatLLM:
    return LLM_BACKENDS.get(backend or ("openai" if url else "llama-cpp"))(name, url)


def make_postprocessor(spec: CascadeSpec, llm: ChatLLM) -> PostProcessor | None:
    if spec.postprocess == "rescore":
        from speechllm.llm.llama_cpp import LlamaCppScorer
        return NBestRescorer(LlamaCppScorer(spec.scorer), spec.rescore_weight)
    if spec.postprocess == "correct":
        return GenerativeCorrector(llm)
    return None


def build_cascade(spec: CascadeSpec | None = None,
                  config: CascadeConfig | None = None) -> CascadeSpeechLM:
    """The cascade `spec` names; `config` (if given) replaces `spec.options`."""
    s = spec or CascadeSpec()
    asr = ASR_BACKENDS.get(s.asr_backend)(s.asr)
    llm = make_llm(s.llm, s.llm_url, s.llm_backend)
    tts = make_tts(s.tts, s.voice) if s.tts else None
    vad = VAD_BACKENDS.get(s.vad_backend)() if s.vad else None
    return CascadeSpeechLM(asr, llm, tts, vad, make_postprocessor(s, llm), config or s.options)
