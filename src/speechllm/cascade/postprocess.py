"""ASR post-processing with an LLM: N-best rescoring and generative error correction."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from speechllm.asr.base import Hypothesis
from speechllm.llm.base import ChatLLM, GenerationOptions, ScoringLM, chat
from speechllm.speechlm import Message


class PostProcessor(Protocol):
    name: str

    def select(self, hypotheses: Sequence[Hypothesis]) -> str:
        """One transcript from an N-best list (best first)."""
        ...


@dataclass(frozen=True)
class Rescored:
    text: str
    asr_score: float
    lm_score: float  # LM log-likelihood per word
    total: float


class NBestRescorer:
    """Pick the hypothesis maximising `asr_score + weight * lm_logprob_per_word`.

    `asr_score` is Whisper's mean token log-probability; the LM term is the scoring LM's
    log-likelihood of the hypothesis (after `context`) divided by its word count, so neither
    term simply prefers short outputs. weight=0 returns the ASR's own 1-best.
    """

    name = "rescore"

    def __init__(self, scorer: ScoringLM, weight: float = 0.3,
                 context: str = "Transcript of a short voice message:\n") -> None:
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.scorer = scorer
        self.weight = weight
        self.context = context

    def rank(self, hypotheses: Sequence[Hypothesis]) -> list[Rescored]:
        out = []
        for h in hypotheses:
            words = max(1, len(h.text.split()))
            lm = self.scorer.loglikelihood(h.text, self.context) / words if h.text else -1e9
            out.append(Rescored(h.text, h.score, lm, h.score + self.weight * lm))
        return sorted(out, key=lambda r: r.total, reverse=True)

    def select(self, hypotheses: Sequence[Hypothesis]) -> str:
        if not hypotheses:
            return ""
        if self.weight == 0 or len(hypotheses) == 1:
            return hypotheses[0].text
        return self.rank(hypotheses)[0].text


_GER_SYSTEM = (
    "You correct speech recognition output. You get candidate transcriptions of one utterance, "
    "most likely first. Reply with the single most plausible transcription and nothing else. "
    "Prefer a candidate's wording; fix only clear recognition errors."
)


class GenerativeCorrector:
    """Generative error correction: a chat LLM reads the N-best list and writes one transcript.

    Falls back to the 1-best when the LLM's answer is empty or far longer than any candidate
    (a sign it answered the utterance instead of transcribing it).
    """

    name = "correct"

    def __init__(self, llm: ChatLLM, max_tokens: int = 64) -> None:
        self.llm = llm
        self.options = GenerationOptions(max_tokens=max_tokens, temperature=0.0)

    def select(self, hypotheses: Sequence[Hypothesis]) -> str:
        if not hypotheses:
            return ""
        listing = "\n".join(f"{i}. {h.text}" for i, h in enumerate(hypotheses, 1))
        reply = chat(self.llm, [Message("system", _GER_SYSTEM),
                                Message("user", f"Candidates:\n{listing}\n\nTranscription:")],
                     self.options)
        text = reply.strip().splitlines()[0].strip() if reply.strip() else ""
        text = re.sub(r"^(\d+\.\s*|transcription:\s*)", "", text, flags=re.IGNORECASE)
        text = text.strip().strip('"').strip()
        longest = max(len(h.text) for h in hypotheses)
        if not text or len(text) > 2 * longest + 10:
            return hypotheses[0].text
        return text
