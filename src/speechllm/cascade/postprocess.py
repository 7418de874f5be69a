"""ASR post-processing with an LLM: N-best rescoring and generative error correction."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from speechllm.asr.base import Hypothesis
from speechllm.llm.base import ChatLLM, GenerationOptions, ScoringLM, chat
from speechllm.speechlm import Context, Message
from speechllm.text_norm import normalize, word_errors


class PostProcessor(Protocol):
    name: str

    def select(self, hypotheses: Sequence[Hypothesis], context: Context | None = None) -> str:
        """One transcript from an N-best list (best first); `context` says what the speech is
        likely about (names and terms, the conversation)."""
        ...


CONTEXT_CHARS = 400  # of context before a transcript: the scoring LM reads 256 tokens at most


def context_prompt(context: Context | None) -> str:
    """The context as a language model reads it before a transcript (the end of the
    conversation and the first listed phrases, within `CONTEXT_CHARS`)."""
    if not context:
        return ""
    lines = []
    if context.text.strip():
        lines.append(f"Context: {context.text.strip()[-CONTEXT_CHARS // 2:]}")
    if context.phrases:
        listed = ", ".join(context.phrases)[: CONTEXT_CHARS - len("".join(lines))]
        lines.append(f"Names and terms that may be mentioned: {listed.rsplit(',', 1)[0]}.")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Rescored:
    text: str
    asr_score: float
    lm_score: float  # LM log-likelihood per word
    total: float


@dataclass(frozen=True)
class GatedRescoring:
    """When the LM may overrule the recogniser's 1-best. Rescoring every list made things worse
    on digits, noise and long audio; the LM's word is taken only where the recogniser is
    unsure between close readings and the LM clearly prefers one (bench/postprocess_tune.py
    chose the defaults on development splits; docs/benchmarks.md)."""

    weight: float = 0.1  # LM log-likelihood per word, against the ASR's mean token log-prob
    min_words: int = 3  # the 1-best has at least this many words (one word gives no context)
    max_margin: float = 0.1  # an alternative's ASR score is within this of the 1-best's
    min_gain: float = 0.1  # and its combined score beats the 1-best's by more than this
    max_edit: int = 99  # and it differs from the 1-best in at most this many words

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")


def word_edits(a: str, b: str) -> int:
    """Word-level edit distance after normalisation (case, punctuation, numbers)."""
    return word_errors(a, b)[0] if a.strip() else len(normalize(b).split())


def eligible(hypotheses: Sequence[Hypothesis], gate: GatedRescoring) -> list[Hypothesis]:
    """The alternatives the gate lets the LM consider (the 1-best first); [] when the 1-best
    stands whatever the LM says."""
    if gate.weight == 0 or len(hypotheses) < 2:
        return []
    top = hypotheses[0]
    if len(top.text.split()) < gate.min_words:
        return []
    alts = [h for h in hypotheses[1:] if h.text and top.score - h.score <= gate.max_margin
            and word_edits(top.text, h.text) <= gate.max_edit]
    return [top, *alts] if alts else []


def choose(scored: Sequence[Rescored], gate: GatedRescoring) -> str:
    """The gated choice among LM-scored hypotheses (the 1-best first)."""
    if not scored:
        return ""
    allowed = eligible([Hypothesis(r.text, r.asr_score, 0) for r in scored], gate)
    return _best(scored, {h.text for h in allowed}, gate)


def _best(scored: Sequence[Rescored], allowed: set[str], gate: GatedRescoring) -> str:
    """The allowed hypothesis whose combined score beats the 1-best's by more than the gain."""
    top = scored[0]
    best, best_total = top.text, top.asr_score + gate.weight * top.lm_score + gate.min_gain
    for r in scored[1:]:
        total = r.asr_score + gate.weight * r.lm_score
        if r.text in allowed and total > best_total:
            best, best_total = r.text, total
    return best


class NBestRescorer:
    """Pick the hypothesis maximising `asr_score + weight * lm_logprob_per_word`, where the
    gate allows it (`GatedRescoring`: the 1-best stands unless the recogniser is unsure
    between close readings).

    `asr_score` is Whisper's mean token log-probability; the LM term is the scoring LM's
    log-likelihood of the hypothesis (after `context`) divided by its word count, so neither
    term simply prefers short outputs. The LM scores only lists the gate lets through.
    """

    name = "rescore"

    def __init__(self, scorer: ScoringLM, weight: float | None = None,
                 context: str = "Transcript of a short voice message:\n",
                 gate: GatedRescoring | None = None) -> None:
        self.gate = gate or GatedRescoring()
        if weight is not None:
            self.gate = replace(self.gate, weight=weight)
        self.scorer = scorer
        self.context = context

    @property
    def weight(self) -> float:
        return self.gate.weight

    def rank(self, hypotheses: Sequence[Hypothesis], context: Context | None = None
             ) -> list[Rescored]:
        """Every hypothesis with its LM score, best combined score first (ungated)."""
        prompt = context_prompt(context) + self.context
        out = []
        for h in hypotheses:
            words = max(1, len(h.text.split()))
            lm = self.scorer.loglikelihood(h.text, prompt) / words if h.text else -1e9
            out.append(Rescored(h.text, h.score, lm, h.score + self.weight * lm))
        return sorted(out, key=lambda r: r.total, reverse=True)

    def select(self, hypotheses: Sequence[Hypothesis], context: Context | None = None) -> str:
        if not hypotheses:
            return ""
        considered = eligible(hypotheses, self.gate)
        if not considered:
            return hypotheses[0].text
        scored = {r.text: r for r in self.rank(considered, context)}
        return _best([scored[h.text] for h in considered], {h.text for h in considered},
                     self.gate)


_GER_SYSTEM = (
    "You correct speech recognition output. You get candidate transcriptions of one utterance, "
    "most likely first. Reply with the single most plausible transcription and nothing else. "
    "Prefer a candidate's wording; fix only clear recognition errors."
)


class GenerativeCorrector:
    """Generative error correction: a chat LLM reads the N-best list and writes one transcript.

    Gated like rescoring (`GatedRescoring`): the LLM is asked only where the recogniser is
    unsure between close readings, and its transcript is taken only if it differs from the
    1-best in at most `gate.max_edit` words; otherwise (or when its answer is empty, or reads
    like an answer to the utterance) the 1-best stands.
    """

    name = "correct"

    def __init__(self, llm: ChatLLM, max_tokens: int = 64,
                 gate: GatedRescoring | None = None) -> None:
        self.llm = llm
        self.options = GenerationOptions(max_tokens=max_tokens, temperature=0.0)
        # a rewrite may leave the list: at most two words changed, where the recogniser is
        # unsure (the rescorer's gate otherwise)
        self.gate = gate or GatedRescoring(max_edit=2)

    def select(self, hypotheses: Sequence[Hypothesis], context: Context | None = None) -> str:
        if not hypotheses:
            return ""
        if not eligible(hypotheses, self.gate):
            return hypotheses[0].text
        text = self.rewrite(hypotheses, context)
        return text if word_edits(hypotheses[0].text, text) <= self.gate.max_edit else \
            hypotheses[0].text

    def rewrite(self, hypotheses: Sequence[Hypothesis], context: Context | None = None) -> str:
        """The LLM's transcript of the list, ungated (the 1-best if it gives none)."""
        if not hypotheses:
            return ""
        listing = "\n".join(f"{i}. {h.text}" for i, h in enumerate(hypotheses, 1))
        ask = f"{context_prompt(context)}Candidates:\n{listing}\n\nTranscription:"
        reply = chat(self.llm, [Message("system", _GER_SYSTEM), Message("user", ask)],
                     self.options)
        text = reply.strip().splitlines()[0].strip() if reply.strip() else ""
        text = re.sub(r"^(\d+\.\s*|transcription:\s*)", "", text, flags=re.IGNORECASE)
        text = text.strip().strip('"').strip()
        longest = max(len(h.text) for h in hypotheses)
        if not text or len(text) > 2 * longest + 10:
            return hypotheses[0].text
        return text
