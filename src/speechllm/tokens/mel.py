"""Log-mel frames and their way back to a waveform (Griffin-Lim), shared by the mel RVQ
tokenizer, the unit-to-speech decoder and the neural vocoder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speechllm._optional import require
from speechllm.audio import Audio
from speechllm.errors import AudioError


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 80
    floor: float = 1e-5  # log floor

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop



def log_mel(audio: Audio, mel: MelConfig) -> np.ndarray:
    """(T, n_mels) natural-log mel power frames."""
    librosa = require("librosa", "tokens")
    if len(audio) == 0:
        raise AudioError("audio has 0 samples")
    x = audio.resample(mel.sample_rate).samples
    m = librosa.feature.melspectrogram(y=x, sr=mel.sample_rate, n_fft=mel.n_fft,
                                       hop_length=mel.hop, n_mels=mel.n_mels, power=2.0)
    return np.log(np.maximum(m, mel.floor)).T.astype(np.float32)


def griffin_lim(frames: np.ndarray, mel: MelConfig, iters: int = 48, seed: int = 0) -> Audio:
    """Waveform from (T, n_mels) log-mel frames: mel -> linear magnitude (NNLS) -> Griffin-Lim
    from the random start phase `seed` draws."""
    librosa = require("librosa", "tokens")
    power = np.exp(frames.T.astype(np.float64))
    magnitude = librosa.feature.inverse.mel_to_stft(power, sr=mel.sample_rate,
                                                    n_fft=mel.n_fft, power=2.0)
    # a fixed start phase: the same frames always give the same waveform (librosa's default
    # draws it from NumPy's global generator, so two calls differed)
    y = librosa.griffinlim(magnitude, n_iter=iters, hop_length=mel.hop, n_fft=mel.n_fft,
                           random_state=seed)
    peak = float(np.abs(y).max()) if y.size else 0.0
    if peak > 0.99:
        y = y * (0.99 / peak)
    return Audio(y.astype(np.float32), mel.sample_rate)
