from __future__ import annotations

from speechllm.asr.base import Hypothesis
from speechllm.cascade.postprocess import GenerativeCorrector, NBestRescorer


def test_scorer_prefers_fluent_text(scorer):
    good = scorer.loglikelihood("The weather is nice today.")
    bad = scorer.loglikelihood("Today nice the is weather.")
    assert good > bad
    # conditioning works: a continuation that fits its context scores higher
    assert scorer.loglikelihood(" Paris.", "The capital of France is") > \
        scorer.loglikelihood(" Berlin.", "The capital of France is")


def test_rescoring_can_overturn_the_asr_ranking(scorer):
    hyps = [Hypothesis("I scream for ice cream sandwich is", -0.30, 8),
            Hypothesis("I want an ice cream sandwich please.", -0.35, 8)]
    assert NBestRescorer(scorer, weight=0.0).select(hyps) == hyps[0].text
    assert NBestRescorer(scorer, weight=1.0).select(hyps) == hyps[1].text
    ranked = NBestRescorer(scorer, weight=1.0).rank(hyps)
    assert ranked[0].total > ranked[1].total


def test_generative_correction_returns_one_transcript(chat_llm):
    hyps = [Hypothesis("Turn of the kitchen lights.", -0.2, 6),
            Hypothesis("Turn off the kitchen lights.", -0.25, 6),
            Hypothesis("Turn of the kitchen lights!", -0.4, 6)]
    text = GenerativeCorrector(chat_llm).select(hyps)
    assert "kitchen lights" in text.lower()
    assert len(text) < 60


def test_cascade_with_rescoring_end_to_end(asr, chat_llm, scorer, piper, question):
    from speechllm.cascade.pipeline import CascadeSpeechLM
    from speechllm.speechlm import Request

    lm = CascadeSpeechLM(asr, chat_llm, piper, postprocess=NBestRescorer(scorer))
    r = lm.respond(Request(audio=question, want_audio=False))
    assert "france" in r.transcript.lower() and "paris" in r.text.lower()
    assert r.timings.stage("postprocess") > 0
