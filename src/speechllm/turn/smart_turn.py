"""Smart Turn v3.2 (Daily, BSD-2): an audio end-of-turn classifier, through onnxruntime.

The model reads Whisper-style log-mel features (80 bins, 100 frames per second) of the last
8 s of the turn, the waveform first normalised to zero mean and unit variance, shorter turns
padded with silence in front; it answers the probability that the speaker has finished.
About 40 ms on one core of this 2-core machine (measured on 1-2 s questions).
"""

from __future__ import annotations

import os
import threading

import numpy as np

from speechllm import models
from speechllm._optional import require
from speechllm.audio import Audio
from speechllm.errors import AudioError, ModelError

RATE = 16000
SECONDS = 8  # the model's input: the last 8 s


class SmartTurn:
    """`TurnDetector` on the Smart Turn v3.2 ONNX model (embedded name "smart-turn-v3.2")."""

    def __init__(self, model: str | os.PathLike[str] = "smart-turn-v3.2") -> None:
        ort = require("onnxruntime", "vad")
        features = require("faster_whisper.feature_extractor", "asr")
        path = models.resolve(model, "turn")
        so = ort.SessionOptions()
        so.inter_op_num_threads = 1
        so.intra_op_num_threads = 1  # one core: the rest are busy with the speculative reply
        so.log_severity_level = 4
        try:
            self._session = ort.InferenceSession(str(path), so,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"cannot load turn model {path}: {exc}") from None
        self._features = features.FeatureExtractor(feature_size=80, chunk_length=SECONDS)
        self._lock = threading.Lock()

    def features(self, audio: Audio) -> np.ndarray:
        """The model's input (1, 80, 800) for the turn that ends with `audio`."""
        if len(audio) == 0:
            raise AudioError("audio has 0 samples")
        x = audio.resample(RATE).samples[-SECONDS * RATE:].astype(np.float32)
        x = np.pad(x, (SECONDS * RATE - len(x), 0))
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        mel = self._features(x, padding=0)[:, : SECONDS * 100]
        return mel[None].astype(np.float32)

    def complete(self, audio: Audio) -> float:
        feats = self.features(audio)
        with self._lock:
            out = self._session.run(None, {"input_features": feats})[0]
        return float(np.asarray(out).reshape(-1)[0])
