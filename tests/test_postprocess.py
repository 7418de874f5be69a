from __future__ import annotations

from speechllm.asr.base import Hypothesis
from speechllm.cascade.postprocess import GatedRescoring, GenerativeCorrector, NBestRescorer


def test_scorer_prefers_fluent_text(scorer):
    good = scorer.loglikelihood("The weather is nice today.")
    bad = scorer.loglikelihood("Today nice the is weather.")
    assert good > bad
    # conditioning works: a continuation that fits its context scores higher
    assert scorer.loglikelihood(" Paris.", "The capital of France is") > \
        scorer.loglikelihood(" Berlin.", "The capital of France is")


def test_rescoring_can_overturn_the_asr_ranking_where_the_gate_allows(scorer):
    hyps = [Hypothesis("I scream for ice cream sandwich is", -0.30, 8),
            Hypothesis("I want an ice cream sandwich please.", -0.35, 8)]
    open_gate = GatedRescoring(weight=1.0, max_edit=3, max_margin=0.2, min_gain=0.0)
    assert NBestRescorer(scorer, gate=open_gate).select(hyps) == hyps[1].text
    assert NBestRescorer(scorer, weight=0.0).select(hyps) == hyps[0].text
    ranked = NBestRescorer(scorer, weight=1.0).rank(hyps)
    assert ranked[0].total > ranked[1].total
    # the gate keeps the recogniser's reading where the LM has nothing to go on or the
    # alternative is another sentence, or where the recogniser was sure
    shut = [GatedRescoring(weight=1.0, max_edit=2),  # three words differ
            GatedRescoring(weight=1.0, max_edit=3, max_margin=0.01),  # ASR sure by 0.05
            GatedRescoring(weight=1.0, max_edit=3, min_words=8)]  # too short to judge
    for gate in shut:
        assert NBestRescorer(scorer, gate=gate).select(hyps) == hyps[0].text, gate


def test_a_lone_word_is_never_rescored(scorer):
    """FSDD-like: the LM has no context to prefer "Eight." over "Eat.", and made digits
    worse when allowed to; with fewer words than `min_words` it is not even asked."""
    calls: list[str] = []

    class Counting:
        def loglikelihood(self, text: str, context: str = "") -> float:
            calls.append(text)
            return scorer.loglikelihood(text, context)

    hyps = [Hypothesis("Eat.", -0.4, 2), Hypothesis("Eight.", -0.45, 2)]
    assert NBestRescorer(Counting()).select(hyps) == "Eat."
    assert calls == []


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
