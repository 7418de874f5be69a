from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import soxr

from speechllm.audio import Audio, load, save
from speechllm.errors import AudioError

from .conftest import FSDD


def tone(seconds=1.0, rate=16000, freq=440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
def test_loads_each_format_as_mono_16k(tmp_path, ext):
    stereo = np.stack([tone(rate=44100), tone(rate=44100)], axis=1)
    path = tmp_path / f"x.{ext}"
    sf.write(path, stereo, 44100)
    audio = load(path)
    assert audio.sample_rate == 16000
    assert audio.samples.ndim == 1
    assert audio.duration == pytest.approx(1.0, abs=0.06)  # mp3 adds encoder padding
    assert 0.15 < np.abs(audio.samples).max() < 0.4


def test_downmix_averages_channels(tmp_path):
    left, right = tone(), np.zeros(16000, np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000)
    audio = load(tmp_path / "s.wav")
    assert np.allclose(audio.samples, left / 2, atol=1e-3)


def test_resample_keeps_pitch_and_length():
    audio = Audio(tone(rate=8000, freq=300.0), 8000).resample(16000)
    assert len(audio) == 16000
    spectrum = np.abs(np.fft.rfft(audio.samples))
    assert abs(np.argmax(spectrum) * 16000 / len(audio) - 300.0) < 2


def test_real_recording_loads_at_native_rate():
    audio = load(FSDD / "recordings" / "3_jackson_0.wav", sample_rate=None)
    assert audio.sample_rate == 8000 and audio.duration > 0.1


def test_save_round_trip(tmp_path):
    audio = Audio(tone(), 16000)
    back = load(save(audio, tmp_path / "out" / "a.flac"))
    assert np.allclose(back.samples, audio.samples, atol=1e-3)


def test_pcm16_round_trip():
    audio = Audio(tone(0.1), 16000)
    back = Audio.from_pcm16(audio.to_pcm16(), 16000)
    assert np.allclose(back.samples, audio.samples, atol=1e-4)
    with pytest.raises(AudioError, match="even number"):
        Audio.from_pcm16(b"\x00\x01\x02", 16000)


# -- bad input: one clear AudioError each ---------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load(tmp_path / "nope.wav")


def test_empty_file(tmp_path):
    (tmp_path / "e.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load(tmp_path / "e.wav")


def test_zero_length_audio(tmp_path):
    sf.write(tmp_path / "z.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="zero length"):
        load(tmp_path / "z.wav")


def test_non_audio_file(tmp_path):
    (tmp_path / "notes.wav").write_text("this is a text file, not audio\n" * 20)
    with pytest.raises(AudioError, match="not a readable audio file"):
        load(tmp_path / "notes.wav")


def test_corrupt_file(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, tone(), 16000)
    data = bytearray(good.read_bytes())
    data[8:16] = b"JUNKJUNK"  # break the RIFF/WAVE header
    (tmp_path / "bad.wav").write_bytes(bytes(data))
    with pytest.raises(AudioError, match="not a readable audio file"):
        load(tmp_path / "bad.wav")


def test_directory(tmp_path):
    with pytest.raises(AudioError, match="directory"):
        load(tmp_path)


def test_too_long_is_refused_before_decoding(tmp_path, monkeypatch):
    sf.write(tmp_path / "long.wav", np.zeros(16000 * 5, np.float32), 16000)
    with pytest.raises(AudioError, match="cap is 2 s"):
        load(tmp_path / "long.wav", max_seconds=2)
    monkeypatch.setenv("SPEECHLLM_MAX_AUDIO_SECONDS", "3")
    with pytest.raises(AudioError, match="SPEECHLLM_MAX_AUDIO_SECONDS"):
        load(tmp_path / "long.wav")
    monkeypatch.setenv("SPEECHLLM_MAX_AUDIO_SECONDS", "10")
    assert load(tmp_path / "long.wav").duration == pytest.approx(5.0)


def test_empty_bytes_and_garbage_bytes():
    with pytest.raises(AudioError, match="empty"):
        load(b"")
    with pytest.raises(AudioError, match="not a readable audio file"):
        load(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)


def test_nan_samples_refused():
    with pytest.raises(AudioError, match="NaN"):
        Audio(np.array([0.0, np.nan], np.float32), 16000)


def test_a_header_declaring_many_channels_at_a_high_rate_is_refused_before_decoding():
    """Issue 47's memory bomb, small: 8 channels at 192 kHz fit the cap in seconds but not in
    samples (48 kHz stereo per second of the cap), so nothing is decoded."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros((96000, 8), np.float32), 192000, format="FLAC")
    with pytest.raises(AudioError, match="8 channels at 192000 Hz"):
        load(buf.getvalue(), 16000, max_seconds=5)  # 0.5 s: under the cap in seconds
    stereo = io.BytesIO()
    sf.write(stereo, np.zeros((48000 * 2, 2), np.float32), 48000, format="FLAC")
    assert load(stereo.getvalue(), 16000, max_seconds=5).duration == pytest.approx(2.0)


def test_block_decoding_matches_decoding_whole(tmp_path):
    """Long files are downmixed and resampled block by block; the result is the one-shot
    result (soxr's streaming resampler is exact across blocks, up to float rounding)."""
    x = (np.random.default_rng(0).standard_normal((44100 * 4, 2)) * 0.1).astype(np.float32)
    sf.write(tmp_path / "s.wav", x, 44100, subtype="FLOAT")
    whole = np.clip(soxr.resample(x.mean(axis=1), 44100, 16000, quality="HQ"), -1, 1)
    got = load(tmp_path / "s.wav", 16000).samples
    assert len(got) == len(whole) and np.abs(got - whole).max() < 1e-5


def test_errors_name_no_heap_addresses():
    with pytest.raises(AudioError) as err:
        load(b"RIFF" + b"\x00" * 200)
    assert "0x" not in str(err.value) and "object at" not in str(err.value)


def test_decoding_memory_follows_the_output_not_the_input():
    """120 s of 48 kHz stereo, the most a 120 s cap admits per second: decoding it whole held
    about 79 MB at once; block by block, peak memory is a small multiple of the 16 kHz mono
    result (7.7 MB) plus a few blocks, whatever the input's rate and channels."""
    import tracemalloc

    from speechllm.audio import BLOCK_FRAMES

    buf = io.BytesIO()
    sf.write(buf, np.zeros((48000 * 120, 2), np.int16), 48000, format="FLAC")
    data = buf.getvalue()
    tracemalloc.start()
    try:
        audio = load(data, 16000, max_seconds=120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result = 120 * 16000 * 4
    assert audio.duration == pytest.approx(120.0)
    assert peak < 3 * result + 4 * BLOCK_FRAMES * 2 * 4, peak
