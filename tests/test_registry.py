"""Component registries: every name the CLI, server and config files offer resolves to a real
backend, a typo lists the valid names, and a new backend is one registration."""

from __future__ import annotations

import pytest

from speechllm.approach import APPROACHES
from speechllm.asr.base import ASR_BACKENDS
from speechllm.eval.tasks import TASKS
from speechllm.llm.base import LLM_BACKENDS
from speechllm.registry import Registry, UnknownName
from speechllm.tokens.base import TOKENIZERS
from speechllm.tts.base import TTS_BACKENDS
from speechllm.vad.base import VAD_BACKENDS

ALL = (ASR_BACKENDS, LLM_BACKENDS, TTS_BACKENDS, VAD_BACKENDS, TOKENIZERS, TASKS, APPROACHES)


@pytest.mark.parametrize("registry", ALL, ids=lambda r: r.kind)
def test_every_registered_name_resolves_to_something_callable(registry):
    assert registry.names()
    for name in registry:
        target = registry.get(name)  # imports the lazy "module:attribute" entries
        assert callable(target) or hasattr(target, "build"), (name, target)


def test_adapter_kinds_build_modules():
    from speechllm.latent.adapters import ADAPTERS, AdapterConfig, make_adapter

    for kind in ADAPTERS:
        assert sum(p.numel() for p in make_adapter(AdapterConfig(kind=kind)).parameters()) > 0


def test_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownName, match="unknown TTS backend 'kokoro'; choose one of: piper, "
                                          "espeak"):
        TTS_BACKENDS.get("kokoro")
    with pytest.raises(ValueError, match=r"unknown task 'wer'.*asr"):
        TASKS.get("wer")


def test_a_name_is_taken_once_and_lazy_entries_name_module_and_attribute():
    with pytest.raises(ValueError, match="already registered"):
        TTS_BACKENDS.register("piper", "speechllm.tts.piper:piper_tts")
    with pytest.raises(ValueError, match="module:attribute"):
        Registry[object]("thing").register("x", "speechllm.tts.piper")


def test_a_new_backend_is_one_registration_and_the_cascade_builds_with_it():
    """A text-only cascade whose TTS backend is registered here, by name."""
    from speechllm.cascade.build import CascadeSpec, make_tts

    class Silent:
        sample_rate = 16000

    made: list[str | None] = []
    TTS_BACKENDS.register("test-silent", lambda voice: made.append(voice) or Silent())
    try:
        assert isinstance(make_tts("test-silent", "v1"), Silent)
        assert made == ["v1"]
        CascadeSpec(tts="test-silent")  # accepted by name, before any model loads
        with pytest.raises(UnknownName):
            CascadeSpec(tts="test-silnet")
    finally:
        TTS_BACKENDS._entries.pop("test-silent")
