"""Assemble a cascade from names and paths (what the CLI and config files use)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from speechllm.cascade.pipeline import CascadeConfig, CascadeSpeechLM
from speechllm.cascade.postprocess import GenerativeCorrector, NBestRescorer, PostProcessor
from speechllm.llm.base import ChatLLM
from speechllm.tts.base import TTS

PostName = Literal["none", "rescore", "correct"]


def _piper(voice: str | None) -> TTS:
    from speechllm.tts.piper import PiperTTS
    return PiperTTS(voice or "piper-joe")


def _espeak(voice: str | None) -> TTS:
    from speechllm.tts.espeak import EspeakOptions, EspeakTTS
    return EspeakTTS(EspeakOptions(voice=voice or "en-us"))


TTS_BACKENDS: dict[str, Callable[[str | None], TTS]] = {"piper": _piper, "espeak": _espeak}


def make_tts(backend: str = "piper", voice: str | None = None) -> TTS:
    """`backend` "piper" (voice: embedded name or .onnx path) or "espeak" (voice: espeak name)."""
    try:
        factory = TTS_BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown TTS backend {backend!r}; choose one of: "
                         f"{', '.join(TTS_BACKENDS)}") from None
    return factory(voice)


@dataclass(frozen=True)
class CascadeSpec:
    asr: str = "whisper-base"  # embedded name or CTranslate2 Whisper dir
    llm: str = "qwen2.5-0.5b-instruct"  # embedded name or GGUF path; with llm_url: server's model
    llm_url: str | None = None  # an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1
    tts: str | None = "piper"  # None: text only
    voice: str | None = None
    vad: bool = True
    postprocess: PostName = "none"
    scorer: str = "gemma-3-270m"  # LM for postprocess="rescore"
    rescore_weight: float = 0.3


def make_llm(name: str, url: str | None = None) -> ChatLLM:
    if url:
        from speechllm.llm.openai_api import OpenAIChat, OpenAIConfig
        return OpenAIChat(OpenAIConfig(base_url=url, model=name))
    from speechllm.llm.llama_cpp import LlamaCppChat
    return LlamaCppChat(name)


def make_postprocessor(spec: CascadeSpec, llm: ChatLLM) -> PostProcessor | None:
    if spec.postprocess == "none":
        return None
    if spec.postprocess == "rescore":
        from speechllm.llm.llama_cpp import LlamaCppScorer
        return NBestRescorer(LlamaCppScorer(spec.scorer), spec.rescore_weight)
    if spec.postprocess == "correct":
        return GenerativeCorrector(llm)
    raise ValueError(f"unknown post-processing {spec.postprocess!r}; "
                     "choose one of: none, rescore, correct")


def build_cascade(spec: CascadeSpec | None = None,
                  config: CascadeConfig | None = None) -> CascadeSpeechLM:
    from speechllm.asr.faster_whisper import FasterWhisperASR
    from speechllm.vad.silero import SileroVAD

    s = spec or CascadeSpec()
    asr = FasterWhisperASR(s.asr)
    llm = make_llm(s.llm, s.llm_url)
    tts = make_tts(s.tts, s.voice) if s.tts else None
    vad = SileroVAD() if s.vad else None
    return CascadeSpeechLM(asr, llm, tts, vad, make_postprocessor(s, llm), config)
