"""Whisper's log-mel features for long audio in bounded memory.

faster-whisper computes the features of a whole recording at once: for 10 minutes its
framed, windowed copies and complex spectrum take about 450 MB at the peak (measured in
docs/serving.md) although the result is 19 MB. The spectrum of one frame depends only on
its own 400 samples, so this computes the same features a block of frames at a time (the
whole recording's maximum, which sets the floor, is applied at the end). Same numbers as
faster-whisper's `FeatureExtractor`, which it replaces on a loaded model
(tests/test_asr.py compares them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

BLOCK_FRAMES = 3000  # 30 s of 10 ms frames per block: a few MB of intermediates


def chunked(extractor: Any) -> Any:
    """A drop-in for `extractor` (faster-whisper's FeatureExtractor, same settings)."""
    cls = type(extractor)

    class Chunked(cls):  # type: ignore[misc, valid-type]
        def __call__(self, waveform: np.ndarray, padding: int = 160,
                     chunk_length: int | None = None) -> np.ndarray:
            if chunk_length is not None:  # as faster-whisper's: later calls keep it
                self.n_samples = chunk_length * self.sampling_rate
                self.nb_max_frames = self.n_samples // self.hop_length
            x = np.asarray(waveform, np.float32)
            if padding:
                x = np.pad(x, (0, padding))
            half = self.n_fft // 2
            x = np.pad(x, (half, half), mode="reflect")  # centred frames, as in its stft
            frames = 1 + (len(x) - self.n_fft) // self.hop_length - 1  # the last is dropped
            window = np.hanning(self.n_fft + 1)[:-1].astype("float32")
            blocks = []
            for start in range(0, frames, BLOCK_FRAMES):
                stop = min(frames, start + BLOCK_FRAMES)
                piece = x[start * self.hop_length:(stop - 1) * self.hop_length + self.n_fft]
                spectrum = self.stft(piece, self.n_fft, self.hop_length, window=window,
                                     center=False, return_complex=True).astype("complex64")
                mel = self.mel_filters @ (np.abs(spectrum) ** 2)
                blocks.append(np.log10(np.clip(mel, a_min=1e-10, a_max=None)))
            log_spec = np.concatenate(blocks, axis=1) if blocks else \
                np.zeros((len(self.mel_filters), 0), np.float32)
            log_spec = np.maximum(log_spec, log_spec.max(initial=-np.inf) - 8.0)
            out: np.ndarray = (log_spec + 4.0) / 4.0
            return out

    copy = Chunked.__new__(Chunked)
    copy.__dict__.update(extractor.__dict__)
    return copy
