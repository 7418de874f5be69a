from __future__ import annotations

import numpy as np
import pytest

from speechllm.audio import Audio
from speechllm.eval.perturb import Babble, Reverb, Speed, Telephone, WhiteNoise, parse

from ..conftest import say


def tone(seconds=1.0, rate=16000, freq=440.0) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    return Audio((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)


@pytest.mark.parametrize("snr", [20.0, 10.0, 0.0])
def test_white_noise_hits_the_requested_snr(snr):
    clean = tone()
    noisy = WhiteNoise(snr).apply(clean, seed=3).samples
    # The mix may be scaled down as a whole to avoid clipping: project the clean part out.
    k = np.dot(noisy, clean.samples) / np.dot(clean.samples, clean.samples)
    noise = noisy - k * clean.samples
    measured = 10 * np.log10(np.mean((k * clean.samples) ** 2) / np.mean(noise ** 2))
    assert measured == pytest.approx(snr, abs=0.2)


def test_same_seed_same_output_other_seed_differs():
    clean = tone()
    for p in (WhiteNoise(5), Reverb(0.4), Babble(5, (tone(freq=300), tone(freq=500)))):
        a, b, c = p.apply(clean, 1), p.apply(clean, 1), p.apply(clean, 2)
        assert np.array_equal(a.samples, b.samples)
        assert not np.array_equal(a.samples, c.samples)


def test_speed_changes_duration_and_pitch():
    fast = Speed(1.25).apply(tone())
    assert fast.duration == pytest.approx(0.8, abs=0.01)
    peak = np.argmax(np.abs(np.fft.rfft(fast.samples))) * 16000 / len(fast)
    assert peak == pytest.approx(550, abs=5)
    with pytest.raises(ValueError):
        Speed(3.0)


def test_telephone_removes_the_high_band():
    rng = np.random.default_rng(0)
    wide = Audio((0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    phone = Telephone().apply(wide)
    spectrum = np.abs(np.fft.rfft(phone.samples)) ** 2
    freqs = np.fft.rfftfreq(len(phone), 1 / 16000)
    assert spectrum[freqs > 4200].sum() < 0.01 * spectrum[(freqs > 400) & (freqs < 3300)].sum()
    assert phone.sample_rate == 16000 and len(phone) == len(wide)


def test_reverb_smears_energy_in_time():
    click = np.zeros(16000, np.float32)
    click[100] = 1.0
    wet = Reverb(rt60=0.5).apply(Audio(click, 16000)).samples
    assert np.abs(wet[2000:6000]).max() > 1e-3  # a tail 0.1-0.4 s after the click
    assert np.abs(wet[:100]).max() < 1e-6  # nothing before it (FFT rounding aside)


def test_parse_short_forms():
    assert parse("noise:snr=10") == WhiteNoise(10.0)
    assert parse("speed:factor=0.9") == Speed(0.9)
    assert parse("telephone") == Telephone()
    with pytest.raises(ValueError, match="choose one of"):
        parse("chorus")
    with pytest.raises(ValueError, match="must be a number"):
        parse("noise:snr=loud")
    with pytest.raises(ValueError, match="babble needs other utterances"):
        parse("babble:snr=5")
    others = [Audio(np.random.default_rng(n).standard_normal(8000).astype(np.float32) * 0.1,
                    16000) for n in range(3)]
    babble = parse("babble:snr=5,talkers=2", others)
    assert isinstance(babble, Babble) and babble.talkers == 2 and babble.snr_db == 5.0
    speech = Audio(np.sin(np.arange(16000) / 10).astype(np.float32) * 0.3, 16000)
    mixed = babble.apply(speech, seed=1)
    noise = mixed.samples - speech.samples
    measured = 10 * np.log10(np.mean(speech.samples ** 2) / np.mean(noise ** 2))
    assert measured == pytest.approx(5.0, abs=0.1)


def test_whisper_still_hears_mildly_perturbed_speech(asr, voice):
    from speechllm.asr.base import ASROptions

    speech = say(voice, "Turn on the kitchen lights.").resample(16000)
    for p in (WhiteNoise(20), Speed(1.1), Telephone(), Reverb(0.3)):
        heard = asr.transcribe(p.apply(speech, seed=0), ASROptions(language="en")).text.lower()
        assert "kitchen" in heard, (p, heard)
