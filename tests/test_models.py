from __future__ import annotations

import shutil

import pytest

from speechllm import models
from speechllm.errors import ModelError


def test_every_embedded_model_is_ready():
    rows = {r.name: r for r in models.status()}
    assert set(rows) == {"whisper-base", "whisper-tiny.en", "qwen2.5-0.5b-instruct",
                         "gemma-3-270m", "piper-joe", "silero-vad", "smart-turn-v3.2"}
    for r in rows.values():
        assert r.status == "ready", r
        assert r.size and r.size > 1_000_000
        assert r.path is not None and r.path.exists()


def test_damaged_cache_is_detected_and_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHLLM_HOME", str(tmp_path))
    target = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    assert models.status(["gemma-3-270m"])[0].status == "not assembled"
    path = models.ensure("gemma-3-270m")
    assert path == target and models.sha256_file(path) == models.spec("gemma-3-270m").sha256
    with target.open("r+b") as f:  # flip bytes in the middle, keep the size
        f.seek(1000)
        f.write(b"\x00" * 64)
    assert models.status(["gemma-3-270m"])[0].status == "damaged"
    assert models.sha256_file(models.ensure("gemma-3-270m")) == models.spec("gemma-3-270m").sha256
    assert not list(tmp_path.glob("*.partial-*"))


def test_smart_turn_without_its_wheel_says_how_to_fetch_it(tmp_path, monkeypatch):
    """The model ships only in the pipecat-ai wheel, which `./dev setup` downloads: without
    it the error names the command, and a damaged wheel is named too."""
    monkeypatch.setenv("SPEECHLLM_HOME", str(tmp_path))
    with pytest.raises(ModelError, match=r"pip download --no-deps pipecat-ai==1\.14\.0"):
        models.ensure("smart-turn-v3.2")
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / models.SMART_TURN_WHEEL).write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="cannot read the model"):
        models.ensure("smart-turn-v3.2")


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPEECHLLM_HOME", str(tmp_path / "x"))
    assert models.cache_dir() == tmp_path / "x"


def test_unknown_name_lists_choices():
    with pytest.raises(ModelError, match="whisper-base"):
        models.resolve("whisper-huge", "asr")
    with pytest.raises(ModelError, match=r"is a chat model"):
        models.resolve("qwen2.5-0.5b-instruct", "asr")


def test_users_own_model_by_path(tmp_path):
    from speechllm.asr.faster_whisper import FasterWhisperASR

    own = tmp_path / "my-whisper"
    shutil.copytree(models.ensure("whisper-tiny.en"), own)
    assert FasterWhisperASR(own).name == "my-whisper"


def test_damaged_user_models_fail_clearly(tmp_path):
    from speechllm.asr.faster_whisper import FasterWhisperASR
    from speechllm.llm.llama_cpp import LlamaCppChat
    from speechllm.tts.piper import PiperTTS

    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a model" * 100)
    with pytest.raises(ModelError, match="not a GGUF file"):
        LlamaCppChat(fake)
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(models.ensure("gemma-3-270m").read_bytes()[:4096])
    with pytest.raises(ModelError, match="cannot load GGUF"):
        LlamaCppChat(truncated)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "model.bin").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot load Whisper"):
        FasterWhisperASR(tmp_path / "w")
    voice = tmp_path / "v.onnx"
    voice.write_bytes(b"garbage")
    with pytest.raises(ModelError, match="config"):
        PiperTTS(voice)
    (tmp_path / "v.onnx.json").write_text("{}")
    with pytest.raises(ModelError, match="cannot load Piper"):
        PiperTTS(voice)
