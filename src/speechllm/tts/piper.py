"""Piper neural TTS (piper-tts, ONNX). Default voice: the embedded en_US-joe-medium."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from speechllm import models
from speechllm._optional import require
from speechllm.audio import Audio
from speechllm.errors import ModelError


def _set_voice_only_on_change() -> None:
    """Piper sets espeak-ng's voice again for every text, and each time espeak-ng leaks about
    1.3 KB (DoVoiceChange; found with heaptrack on the server soak, docs/serving.md): a busy
    server would lose ~130 MB per 100,000 answers. The voice is process-wide espeak state, so
    setting it again to the one already set changes nothing; skip those calls."""
    from piper import espeakbridge

    if getattr(espeakbridge.set_voice, "speechllm_once", False):
        return
    set_voice = espeakbridge.set_voice
    current: str | None = None

    def once(voice: str) -> None:
        nonlocal current
        if voice != current:
            set_voice(voice)
            current = voice

    once.speechllm_once = True  # type: ignore[attr-defined]
    espeakbridge.set_voice = once


@dataclass(frozen=True)
class PiperOptions:
    length_scale: float | None = None  # >1 speaks slower; None uses the voice's default
    noise_scale: float | None = None
    noise_w_scale: float | None = None
    speaker_id: int | None = None  # for multi-speaker voices
    volume: float = 1.0
    # onnxruntime's threads for this voice (0: one per core, its default). One each is faster
    # when several processes synthesise at once: a voice gains little from a second core.
    threads: int = 0


class PiperTTS:
    """A Piper voice: `model` is an embedded name ("piper-joe") or a path to a voice .onnx whose
    config sits beside it as `<name>.onnx.json`."""

    deterministic = False  # each call draws new noise (noise_scale): a new take of the text

    def __init__(self, model: str | os.PathLike[str] = "piper-joe",
                 options: PiperOptions | None = None) -> None:
        piper = require("piper", "tts")
        path = models.resolve(model, "tts")
        config = Path(str(path) + ".json")
        if not config.is_file():
            raise ModelError(f"Piper voice config {config} is missing (expected beside {path})")
        try:
            self._voice = piper.PiperVoice.load(path, config_path=config)
        except Exception as exc:  # onnxruntime raises many types for a damaged file
            raise ModelError(f"cannot load Piper voice {path}: {exc}") from None
        self.sample_rate: int = int(self._voice.config.sample_rate)
        _set_voice_only_on_change()
        o = options or PiperOptions()
        # piper builds its session with default options: build it again with ours
        import onnxruntime

        settings = onnxruntime.SessionOptions()
        if o.threads:
            settings.intra_op_num_threads = settings.inter_op_num_threads = o.threads
        # onnxruntime keeps a memory plan per input shape it has seen, and every sentence
        # has its own length: a server's memory crept ~1 MB per 50 sentences without end
        # (plateau at +33 MB with this, at the same speed; docs/serving.md)
        settings.enable_mem_pattern = False
        self._voice.session = onnxruntime.InferenceSession(
            str(path), sess_options=settings, providers=["CPUExecutionProvider"])
        self._syn = piper.SynthesisConfig(
            speaker_id=o.speaker_id, length_scale=o.length_scale, noise_scale=o.noise_scale,
            noise_w_scale=o.noise_w_scale, volume=o.volume,
        )
        self._lock = threading.Lock()  # one ONNX session; keep calls from interleaving
        self.name = Path(path).stem

    def stream(self, text: str) -> Iterator[Audio]:
        """One Audio per sentence that Piper finds in `text`, each as soon as it is ready."""
        if not text.strip():
            return
        sentences = iter(self._voice.synthesize(text, self._syn))
        while True:
            # Hold the lock per sentence, not across yields: other sessions interleave.
            with self._lock:
                chunk = next(sentences, None)
            if chunk is None:
                return
            yield Audio(chunk.audio_float_array, chunk.sample_rate)


def piper_tts(voice: str | None) -> PiperTTS:
    """The registry's factory: `voice` an embedded Piper name or an .onnx path."""
    return PiperTTS(voice or "piper-joe")
