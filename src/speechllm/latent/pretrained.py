"""Pretrained latent speech LLMs from weights on disk, behind the one `SpeechLM` interface.

- **Ultravox** (fixie-ai): a Whisper encoder, a frame-stacking projector and a causal LM.
  Its weights are mapped by name onto speechllm's own parts (`HFWhisperEncoder`, the
  `ultravox` adapter, a transformers causal LM), so the result is a `LatentSpeechLM`: it
  streams, evaluates, serves and fine-tunes like a model trained here, and Ultravox's own
  modelling code (`trust_remote_code`) is never run.
- **Qwen2-Audio**: transformers' `Qwen2AudioForConditionalGeneration` and its processor.

`load(path)` reads the folder's config.json and picks the right one, so `{"approach":
"latent", "path": ...}` accepts all three kinds of folder. Nothing is downloaded: a checkpoint
that names its base models by hub id (Ultravox saves only its projector that way) needs those
models on disk, passed as `audio_model` / `text_model`.

One difference from Ultravox's own code: the Whisper encoder here always sees the 30 s window
Whisper was trained on, where Ultravox masks attention past the audio's end; the states of the
audio itself differ slightly.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from speechllm._optional import require
from speechllm.encoders import HFWhisperEncoder
from speechllm.errors import AudioError, ModelError
from speechllm.latent.adapters import AdapterConfig
from speechllm.latent.model import DEFAULT_INSTRUCTION, LatentConfig, LatentSpeechLM
from speechllm.speechlm import AnswerOptions, Event, Message, Request, Response
from speechllm.threaded_stream import OnText, threaded_stream
from speechllm.timing import Stopwatch

torch = require("torch", "latent")


def kind_of(folder: str | os.PathLike[str]) -> str:
    """"speechllm", "ultravox" or "qwen2_audio", from the folder's config.json."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{folder}: no config.json; not a saved model folder") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable ({exc})") from None
    model_type = config.get("model_type", "") if isinstance(config, dict) else ""
    if model_type == "ultravox" or "UltravoxModel" in config.get("architectures", []):
        return "ultravox"
    if model_type == "qwen2_audio":
        return "qwen2_audio"
    if "adapter" in config:
        return "speechllm"
    raise ModelError(f"{folder}: config.json is neither a speechllm latent model, Ultravox nor "
                     f"Qwen2-Audio (model_type {model_type!r})")


def load(folder: str | os.PathLike[str], engine: str = "torch", **paths: str) -> Any:
    """A `SpeechLM` from any supported latent model folder."""
    kind = kind_of(folder)
    if kind == "speechllm":
        return LatentSpeechLM.from_pretrained(folder, engine)
    if engine != "torch":
        raise ModelError(f"engine {engine!r} serves speechllm's own latent models only; "
                         f"{kind} runs on torch")
    if kind == "ultravox":
        return load_ultravox(folder, **paths)
    return Qwen2AudioSpeechLM(folder)


def _weights(folder: Path) -> dict[str, Any]:
    st = require("safetensors.torch", "latent")
    state: dict[str, Any] = {}
    for file in sorted(folder.glob("*.safetensors")):
        try:
            state.update(st.load_file(str(file)))
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise ModelError(f"{file}: damaged weights ({exc})") from None
    return state


def _part(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _load_exact(module: Any, weights: dict[str, Any], what: str, optional: set[str]) -> None:
    missing, unexpected = module.load_state_dict(weights, strict=False)
    missing = [k for k in missing if k not in optional]
    if missing or unexpected:
        raise ModelError(f"{what}: weights do not match the config (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")


def _base_model(name: str | None, given: str | None, what: str, field: str) -> Path:
    for candidate in (given, name):
        if candidate and Path(candidate).expanduser().is_dir():
            return Path(candidate).expanduser()
    raise ModelError(f"the checkpoint has no {what} weights and names {name!r} ({field}); put "
                     f"that model on disk and pass its folder as {field.split('_')[0]}_model")


def load_ultravox(folder: str | os.PathLike[str], audio_model: str | None = None,
                  text_model: str | None = None) -> LatentSpeechLM:
    """An Ultravox checkpoint folder as a `LatentSpeechLM` (see the module docstring)."""
    transformers = require("transformers", "latent")
    path = Path(folder)
    config = json.loads((path / "config.json").read_text())
    act = config.get("projector_act", "swiglu")
    if act != "swiglu":
        raise ModelError(f"{path}: projector_act {act!r} is not supported (only 'swiglu', as in "
                         "every released Ultravox)")
    state = _weights(path)

    audio_state = _part(state, "audio_tower.")
    if audio_state:
        audio_cfg = dict(config["audio_config"])
        encoder = HFWhisperEncoder(config=transformers.AutoConfig.for_model(
            audio_cfg.pop("model_type", "whisper"), **audio_cfg))
        _load_exact(encoder.module, audio_state, "audio_tower", set())
    else:
        encoder = HFWhisperEncoder(model=_base_model(config.get("audio_model_id"), audio_model,
                                                     "audio encoder", "audio_model_id"))
    encoder.module.eval()
    encoder.module.requires_grad_(False)

    text_state = _part(state, "language_model.")
    if text_state:
        text_cfg = dict(config["text_config"])
        lm_config = transformers.AutoConfig.for_model(text_cfg.pop("model_type"), **text_cfg)
        lm = transformers.AutoModelForCausalLM.from_config(lm_config, dtype=torch.float32)
        tied = {"lm_head.weight"} if getattr(lm_config, "tie_word_embeddings", False) else set()
        _load_exact(lm, text_state, "language_model", tied)
        lm.tie_weights()
        tok_dir = path
    else:
        tok_dir = _base_model(config.get("text_model_id"), text_model, "language model",
                              "text_model_id")
        lm = transformers.AutoModelForCausalLM.from_pretrained(
            str(tok_dir), local_files_only=True, dtype=torch.float32)
    lm.eval()
    lm.requires_grad_(False)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(
            str(path if (path / "tokenizer_config.json").is_file() else tok_dir),
            local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: no usable tokenizer ({exc})") from None

    adapter = AdapterConfig(kind="ultravox" if config.get("projector_ln_mid", True)
                            else "ultravox-ln-post", stack=int(config.get("stack_factor", 8)),
                            hidden=int(config["hidden_size"]))
    latent = LatentConfig(encoder=str(path), window_seconds=encoder.window_seconds,
                          llm=str(path), adapter=adapter,
                          system="You are a friendly and helpful assistant.")
    model = LatentSpeechLM(latent, encoder=encoder, llm=(lm, tok))
    _load_exact(model.adapter, _part(state, "multi_modal_projector."), "multi_modal_projector",
                set())
    model.adapter.eval()
    return model


class _TextStreamer:
    """transformers' streamer hook: the first `put` is the prompt, then one token at a time."""

    def __init__(self, tok: Any, clock: Stopwatch, on_text: OnText | None) -> None:
        self.tok, self.clock, self.on_text = tok, clock, on_text
        self.prompt_seen = False
        self.ids: list[int] = []

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        if not self.ids:
            self.clock.mark_text()
        self.ids += [int(v) for v in value.reshape(-1)]
        if self.on_text is not None:
            self.on_text(self.tok.decode(self.ids, skip_special_tokens=True))

    def end(self) -> None:
        pass


class Qwen2AudioSpeechLM:
    """Qwen2-Audio (instruct) from a local Hugging Face folder."""

    def __init__(self, folder: str | os.PathLike[str], dtype: str = "float32") -> None:
        transformers = require("transformers", "latent")
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(
                str(folder), local_files_only=True)
            self.model = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(
                str(folder), local_files_only=True, dtype=getattr(torch, dtype))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load Qwen2-Audio from {folder}: {exc}") from None
        self.model.eval()
        extractor = self.processor.feature_extractor
        self.rate = int(extractor.sampling_rate)
        self.window_seconds = float(extractor.chunk_length)
        self._lock = threading.Lock()
        self.options = AnswerOptions()  # set from an approach config's options

    def _inputs(self, request: Request) -> Any:
        instruction = request.system or self.options.instruction or DEFAULT_INSTRUCTION
        turns: list[dict[str, Any]] = [{"role": m.role, "content": m.content}
                                       for m in request.history]
        content: list[dict[str, str]] = []
        audio = []
        if request.audio is not None:
            if request.audio.duration > self.window_seconds + 1e-6:
                raise AudioError(f"audio of {request.audio.duration:.1f} s is longer than "
                                 f"Qwen2-Audio's {self.window_seconds:g} s window; split it")
            content.append({"type": "audio", "audio_url": "request"})
            audio.append(request.audio.resample(self.rate).samples)
        content.append({"type": "text", "text": request.text or instruction})
        turns.append({"role": "user", "content": content})
        prompt = self.processor.apply_chat_template(turns, add_generation_prompt=True,
                                                    tokenize=False)
        return self.processor(text=prompt, audio=audio or None, sampling_rate=self.rate,
                              return_tensors="pt")

    def _generate(self, request: Request, on_text: OnText | None = None) -> Response:
        clock = Stopwatch()
        with self._lock, torch.inference_mode():
            with clock.span("features"):
                inputs = self._inputs(request)
            start = clock.elapsed()
            streamer = _TextStreamer(self.processor.tokenizer, clock, on_text)
            self.model.generate(**inputs, max_new_tokens=request.token_limit(
                self.options.max_tokens), do_sample=False, streamer=streamer)
            first = clock.freeze().ttft or clock.elapsed()
            clock.add("prefill", start, first)
            clock.add("decode", first, clock.elapsed())
        text = self.processor.tokenizer.decode(streamer.ids, skip_special_tokens=True).strip()
        heard = "<audio>" if request.audio is not None else (request.text or "")
        history = (*request.history, Message("user", heard), Message("assistant", text))
        return Response(text, None, None, clock.freeze(), history)

    def respond(self, request: Request) -> Response:
        return self._generate(request)

    def stream(self, request: Request) -> AsyncIterator[Event]:
        return threaded_stream(self._generate, request)
