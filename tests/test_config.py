"""Config files reach every cascade option, and refuse what they cannot use by name."""

from __future__ import annotations

import pytest

from speechllm import approach
from speechllm.cascade.build import spec_from_dict
from speechllm.cascade.pipeline import CascadeConfig


def test_every_pipeline_option_is_settable_from_a_config():
    spec = spec_from_dict({
        "asr": "whisper-tiny.en", "tts": "espeak", "voice": "en-gb",
        "options": {"system": "Be brief.", "nbest": 3, "stream_tts": False,
                    "min_clause_chars": 10, "first_clause_words": 0,
                    "first_clause_priority": False, "vad_pad": 0.1,
                    "asr": {"window_seconds": 8, "beam_size": 2, "temperature": [0, 0.5]},
                    "generation": {"max_tokens": 64, "temperature": 0.2, "stop": ["\n"]}}})
    o = spec.options
    assert (o.system, o.nbest, o.stream_tts, o.min_clause_chars, o.first_clause_words,
            o.first_clause_priority, o.vad_pad) == ("Be brief.", 3, False, 10, 0, False, 0.1)
    assert (o.asr.window_seconds, o.asr.beam_size, o.asr.temperature) == (8.0, 2, (0.0, 0.5))
    assert (o.generation.max_tokens, o.generation.temperature, o.generation.stop) == (
        64, 0.2, ("\n",))
    untouched = CascadeConfig()
    assert spec_from_dict({}).options == untouched


@pytest.mark.parametrize(("fields", "message"), [
    ({"options": {"nbest": "3"}}, "options.nbest: expected int, got '3'"),
    ({"options": {"nbst": 3}}, "options.nbst: unknown field; known: .*nbest"),
    ({"options": {"asr": {"beam_size": True}}}, "options.asr.beam_size: expected int"),
    ({"options": {"generation": {"stop": ["a", 3]}}}, r"options.generation.stop\[1\]"),
    ({"options": {"nbest": 0}}, "options.nbest must be >= 1"),
    ({"options": {"asr": {"window_seconds": 40}}}, "options.asr.window_seconds"),
    ({"options": {"vad_pad": -1}}, "vad_pad must be >= 0"),
    ({"options": 5}, "options: expected an object"),
    ({"postprocess": "fix"}, "postprocess: one of 'none', 'rescore', 'correct'"),
    ({"rescore_weight": "high"}, "rescore_weight: expected a number"),
    ({"asr_model": "x"}, "asr_model: not a cascade setting"),
    ({"tts": "kokoro"}, "unknown TTS backend 'kokoro'"),
])
def test_a_bad_field_is_refused_by_name_before_any_model_loads(fields, message):
    with pytest.raises(ValueError, match=message):
        approach.check({"approach": "cascade", **fields})
