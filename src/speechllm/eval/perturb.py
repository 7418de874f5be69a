"""Seeded, reproducible perturbations for robustness sweeps.

Each is a frozen dataclass with `apply(audio, seed)`; the same seed gives the same output.
`parse("noise:snr=10")` builds one from the short form the CLI and run configs use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import soxr

from speechllm.audio import Audio


class Perturbation(Protocol):
    name: str

    def apply(self, audio: Audio, seed: int = 0) -> Audio: ...


def _mix(audio: Audio, noise: np.ndarray, snr_db: float) -> Audio:
    """Scale `noise` so that speech power / noise power = snr_db, and add it."""
    speech_power = float(np.mean(audio.samples.astype(np.float64) ** 2))
    noise_power = float(np.mean(noise.astype(np.float64) ** 2))
    if speech_power == 0 or noise_power == 0:
        return audio
    gain = np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    mixed = audio.samples + gain * noise
    peak = float(np.max(np.abs(mixed)))
    if peak > 1.0:  # scale the mix, never clip: clipping would change the SNR
        mixed = mixed / peak
    return Audio(mixed.astype(np.float32), audio.sample_rate)


@dataclass(frozen=True)
class WhiteNoise:
    snr_db: float
    name: str = "noise"

    def apply(self, audio: Audio, seed: int = 0) -> Audio:
        rng = np.random.default_rng(seed)
        return _mix(audio, rng.standard_normal(len(audio)).astype(np.float32), self.snr_db)


@dataclass(frozen=True, eq=False)
class Babble:
    """Several other utterances summed at random offsets: the noise of a crowded room."""

    snr_db: float
    others: Sequence[Audio] = field(default_factory=tuple)
    talkers: int = 4
    name: str = "babble"

    def apply(self, audio: Audio, seed: int = 0) -> Audio:
        if not self.others:
            raise ValueError("babble needs other utterances to mix from")
        rng = np.random.default_rng(seed)
        noise = np.zeros(len(audio), np.float32)
        for _ in range(self.talkers):
            other = self.others[int(rng.integers(len(self.others)))]
            src = other.resample(audio.sample_rate).samples
            src = src / max(1e-9, float(np.sqrt(np.mean(src ** 2))))
            reps = np.tile(src, int(np.ceil((len(noise) + len(src)) / max(1, len(src)))))
            start = int(rng.integers(max(1, len(src))))
            noise += reps[start:start + len(noise)]
        return _mix(audio, noise, self.snr_db)


@dataclass(frozen=True)
class Speed:
    """Play faster (>1) or slower (<1), pitch moving with it (Kaldi-style speed perturbation)."""

    factor: float
    name: str = "speed"

    def __post_init__(self) -> None:
        if not 0.5 <= self.factor <= 2.0:
            raise ValueError(f"speed factor must be in [0.5, 2], got {self.factor}")

    def apply(self, audio: Audio, seed: int = 0) -> Audio:
        # Resample as if recorded at rate*factor, then label it with the original rate.
        out = soxr.resample(audio.samples, audio.sample_rate * self.factor, audio.sample_rate)
        return Audio(out.astype(np.float32), audio.sample_rate)


@dataclass(frozen=True)
class Reverb:
    """Convolution with a synthetic room impulse response: exponentially decaying noise whose
    energy falls 60 dB in `rt60` seconds, after a direct-path impulse."""

    rt60: float = 0.5
    name: str = "reverb"

    def impulse_response(self, sample_rate: int, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        n = max(1, int(self.rt60 * sample_rate))
        t = np.arange(n) / sample_rate
        tail = rng.standard_normal(n) * np.exp(-6.9078 * t / self.rt60)  # ln(1000) = 60 dB
        tail[0] = 0.0
        rir = np.concatenate([[1.0], 0.3 * tail])
        return (rir / np.sqrt(np.sum(rir ** 2))).astype(np.float32)

    def apply(self, audio: Audio, seed: int = 0) -> Audio:
        rir = self.impulse_response(audio.sample_rate, seed)
        size = len(audio) + len(rir) - 1
        nfft = 1 << (size - 1).bit_length()
        wet = np.fft.irfft(np.fft.rfft(audio.samples, nfft) * np.fft.rfft(rir, nfft), nfft)
        wet = wet[: len(audio)]
        peak = float(np.max(np.abs(wet))) or 1.0
        scale = max(1.0, peak)
        return Audio((wet / scale).astype(np.float32), audio.sample_rate)


@dataclass(frozen=True)
class Telephone:
    """Narrowband telephone: 300-3400 Hz band, 8 kHz, 8-bit mu-law (G.711-like), back to the
    input rate."""

    name: str = "telephone"

    def apply(self, audio: Audio, seed: int = 0) -> Audio:
        narrow = audio.resample(8000).samples.astype(np.float64)
        spectrum = np.fft.rfft(narrow)
        freqs = np.fft.rfftfreq(len(narrow), 1 / 8000)
        spectrum[(freqs < 300) | (freqs > 3400)] = 0
        band = np.clip(np.fft.irfft(spectrum, len(narrow)), -1, 1)
        mu = 255.0
        coded = np.sign(band) * np.log1p(mu * np.abs(band)) / np.log1p(mu)
        coded = np.round(coded * 127) / 127  # 8 bits
        decoded = np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(mu)) / mu
        return Audio(decoded.astype(np.float32), 8000).resample(audio.sample_rate)


def parse(spec: str, others: Sequence[Audio] = ()) -> Perturbation:
    """A perturbation from its short form: "noise:snr=10", "babble:snr=5,talkers=4",
    "speed:factor=1.1", "reverb:rt60=0.5", "telephone". Babble mixes from `others`."""
    name, _, params = spec.partition(":")
    kwargs: dict[str, float] = {}
    for part in filter(None, params.split(",")):
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"{spec!r}: parameters are key=value, got {part!r}")
        try:
            kwargs[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"{spec!r}: {key} must be a number, got {value!r}") from None
    kinds: dict[str, type] = {"noise": WhiteNoise, "babble": Babble, "speed": Speed,
                              "reverb": Reverb, "telephone": Telephone}
    if name not in kinds:
        raise ValueError(f"unknown perturbation {name!r}; choose one of: {', '.join(kinds)}")
    args: dict[str, object] = {("snr_db" if k == "snr" else k): v for k, v in kwargs.items()}
    if name == "babble":
        if not others:
            raise ValueError(f"{spec!r}: babble needs other utterances to mix from")
        args["others"] = tuple(others)
        args["talkers"] = int(kwargs.get("talkers", 4))
    try:
        made: Perturbation = kinds[name](**args)
    except TypeError as exc:
        raise ValueError(f"{spec!r}: {exc}") from None
    return made
