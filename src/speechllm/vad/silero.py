"""Silero VAD v6 through onnxruntime, with no torch.

The ONNX file is the one faster-whisper bundles (`faster_whisper/assets/silero_vad_v6.onnx`):
inputs `input` (N, 64 + 512) — each 512-sample window at 16 kHz preceded by the last 64
samples of the window before it — and LSTM state `h`, `c` (1, 1, 128); output one speech
probability per window (32 ms).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from speechllm import models
from speechllm._optional import require
from speechllm.audio import Audio
from speechllm.errors import ModelError
from speechllm.vad.base import SpeechRegion

WINDOW = 512
CONTEXT = 64
BLOCK = 1024  # windows per onnxruntime call when judging a whole clip (about 33 s)
RATE = 16000


@dataclass(frozen=True)
class VADOptions:
    threshold: float = 0.5  # speech starts when a window's probability reaches this
    neg_threshold: float = 0.35  # and ends after `min_silence` below this
    min_speech: float = 0.15  # seconds; shorter blips are dropped
    min_silence: float = 0.3  # seconds of silence that close a region

    def __post_init__(self) -> None:
        if not 0 < self.neg_threshold <= self.threshold < 1:
            raise ValueError("need 0 < neg_threshold <= threshold < 1")


class SileroVAD:
    frame_seconds = WINDOW / RATE

    def __init__(self, model: str | os.PathLike[str] = "silero-vad",
                 options: VADOptions | None = None) -> None:
        ort = require("onnxruntime", "vad")
        path = models.resolve(model, "vad")
        so = ort.SessionOptions()
        so.inter_op_num_threads = 1
        so.intra_op_num_threads = 1
        so.log_severity_level = 4
        so.enable_mem_pattern = False  # no memory plan kept per clip length (Piper's reason)
        try:
            self._session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"cannot load VAD model {path}: {exc}") from None
        self.options = options or VADOptions()
        self._lock = threading.Lock()

    def _run(self, windows: np.ndarray, h: np.ndarray, c: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            probs, h, c = self._session.run(None, {"input": windows, "h": h, "c": c})
        return np.asarray(probs).reshape(-1), h, c

    def speech_probabilities(self, audio: Audio) -> list[float]:
        """Speech probability of each 32 ms window of `audio` (resampled to 16 kHz)."""
        x = audio.resample(RATE).samples
        if len(x) == 0:
            return []
        x = np.pad(x, (0, (-len(x)) % WINDOW))
        frames = x.reshape(-1, WINDOW)
        context = np.roll(frames[:, -CONTEXT:], 1, axis=0)
        context[0] = 0.0
        windows = np.ascontiguousarray(np.concatenate([context, frames], axis=1))
        h = c = np.zeros((1, 1, 128), np.float32)
        probs = []
        # The windows are one sequence (the state runs through them); fed in blocks, state
        # carried, because onnxruntime sizes its activations by the whole input and keeps
        # that memory: 10 minutes at once took ~250 MB and held it
        for i in range(0, len(windows), BLOCK):
            p, h, c = self._run(windows[i:i + BLOCK], h, c)
            probs.append(p)
        return np.concatenate(probs).tolist()

    def regions(self, audio: Audio) -> list[SpeechRegion]:
        return regions_from_probabilities(self.speech_probabilities(audio), self.frame_seconds,
                                          self.options, audio.duration)

    def stream(self) -> StreamingVAD:
        """A detector fed chunk by chunk, for live audio."""
        return StreamingVAD(self)


def regions_from_probabilities(probs: list[float], frame: float, o: VADOptions,
                               duration: float) -> list[SpeechRegion]:
    """Hysteresis over per-window probabilities -> speech regions in seconds."""
    out: list[SpeechRegion] = []
    start: int | None = None
    silent = 0
    close_after = max(1, round(o.min_silence / frame))
    for i, p in enumerate(probs):
        if start is None:
            if p >= o.threshold:
                start, silent = i, 0
            continue
        silent = silent + 1 if p < o.neg_threshold else 0
        if silent >= close_after:
            end = i - silent + 1
            if (end - start) * frame >= o.min_speech:
                out.append(SpeechRegion(start * frame, end * frame))
            start = None
    if start is not None and (len(probs) - start) * frame >= o.min_speech:
        out.append(SpeechRegion(start * frame, min(duration, len(probs) * frame)))
    return out


class StreamingVAD:
    """Feeds 16 kHz audio in any chunk sizes; keeps the LSTM state between calls."""

    def __init__(self, vad: SileroVAD) -> None:
        self._vad = vad
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._pending = np.zeros(0, np.float32)
        self._context = np.zeros(CONTEXT, np.float32)

    def feed(self, samples: np.ndarray) -> list[float]:
        """Probabilities for every whole 512-sample window now available."""
        self._pending = np.concatenate([self._pending, samples.astype(np.float32)])
        n = len(self._pending) // WINDOW
        probs: list[float] = []
        for k in range(n):
            frame = self._pending[k * WINDOW:(k + 1) * WINDOW]
            window = np.concatenate([self._context, frame])[None, :]
            p, self._h, self._c = self._vad._run(window, self._h, self._c)
            self._context = frame[-CONTEXT:]
            probs.append(float(p[0]))
        self._pending = self._pending[n * WINDOW:]
        return probs
