"""Whisper through faster-whisper (CTranslate2): transcription, translation, language ID,
word timestamps, and N-best lists read straight from CTranslate2's beam search.

Long audio and loops: the short-window path (`ASROptions.window_seconds`) decodes once, with
neither timestamps nor Whisper's temperature fallback, so a repetition loop there ("in the
car in the car in the car ...", found by the text's gzip compression ratio, as Whisper's own
fallback does) sends the audio to faster-whisper's full path. N-best lists of audio longer
than one window are made segment by segment on the full path's segments, each list led by
that segment's plain transcript."""

from __future__ import annotations

import math
import os
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from speechllm import models
from speechllm._optional import require
from speechllm.asr.base import (
    ASROptions,
    Hypothesis,
    Segment,
    SegmentHypotheses,
    Transcript,
    Word,
)
from speechllm.asr.whisper_features import chunked
from speechllm.audio import Audio
from speechllm.errors import AudioError, ModelError

RATE = 16000
WINDOW_SECONDS = 30.0
LOOP_RATIO = 2.4  # Whisper's compression-ratio threshold: text above it repeats itself
EDGE = 0.1  # seconds of audio kept either side of a segment when it is decoded alone
# Longest closed reading (`read_within`): closed vocabularies are short phrases, and a beam
# restricted to their pieces otherwise loops on them ("- - - -") until the window's budget.
READING_TOKENS = 12
PUNCTUATION = (",", ".", "!", "?", "-", " -", "...")


def looping(text: str) -> bool:
    """Whether `text` repeats itself the way a decoding loop does (gzip ratio > 2.4)."""
    data = text.encode()
    return len(data) > 24 and len(data) / len(zlib.compress(data)) > LOOP_RATIO


@dataclass(frozen=True)
class WhisperConfig:
    compute_type: str = "int8"  # CTranslate2 quantisation: int8, int8_float32, float32, ...
    device: str = "cpu"
    cpu_threads: int = 0  # 0: one per core


class FasterWhisperASR:
    """`model` is an embedded name ("whisper-base", "whisper-tiny.en") or a CTranslate2 Whisper
    directory of your own."""

    def __init__(self, model: str | os.PathLike[str] = "whisper-base",
                 config: WhisperConfig | None = None) -> None:
        fw = require("faster_whisper", "asr")
        cfg = config or WhisperConfig()
        path = models.resolve(model, "asr")
        if not (Path(path) / "model.bin").is_file():
            raise ModelError(f"{path} is not a CTranslate2 Whisper directory (no model.bin)")
        try:
            self._model = fw.WhisperModel(
                str(path), device=cfg.device, compute_type=cfg.compute_type,
                cpu_threads=cfg.cpu_threads or (os.cpu_count() or 1), local_files_only=True,
            )
        except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError for bad files
            raise ModelError(f"cannot load Whisper model from {path}: {exc}") from None
        # the same features in bounded memory: long uploads no longer cost ~0.5 GB each
        self._model.feature_extractor = chunked(self._model.feature_extractor)
        self._tokenizer_cls = require("faster_whisper.tokenizer", "asr").Tokenizer
        self._pad = require("faster_whisper.audio", "asr").pad_or_trim
        self.name = str(model) if str(model) in models.REGISTRY else Path(path).name
        self.multilingual: bool = bool(self._model.model.is_multilingual)
        self.languages: tuple[str, ...] = tuple(self._model.supported_languages)
        self._lock = threading.Lock()  # CTranslate2 models are safe, but keep CPU use predictable
        self._closed: dict[tuple[tuple[str, ...], str], list[int]] = {}  # suppress lists

    @staticmethod
    def _samples(audio: Audio) -> np.ndarray:
        if len(audio) == 0:
            raise AudioError("audio has 0 samples")
        return np.ascontiguousarray(audio.resample(RATE).samples)

    def _check(self, options: ASROptions) -> None:
        if options.language is not None and options.language not in self.languages:
            raise ValueError(f"{self.name} does not know language {options.language!r}; "
                             f"it knows {', '.join(self.languages)}")
        if options.task == "translate" and not self.multilingual:
            raise ValueError(f"{self.name} is English-only and cannot translate; use whisper-base")

    def transcribe(self, audio: Audio, options: ASROptions | None = None) -> Transcript:
        o = options or ASROptions()
        self._check(o)
        samples = self._samples(audio)
        if o.window_seconds is not None and len(samples) <= o.window_seconds * RATE:
            heard = self._transcribe_window(samples, o)
            if not looping(heard.text):
                return heard
        return self._transcribe_full(samples, o)

    def _transcribe_full(self, samples: np.ndarray, o: ASROptions) -> Transcript:
        """faster-whisper's own path: 30 s windows, timestamps, temperature fallback."""
        with self._lock:
            segments, info = self._model.transcribe(
                samples, task=o.task, language=o.language, beam_size=o.beam_size,
                word_timestamps=o.word_timestamps, initial_prompt=o.initial_prompt,
                hotwords=o.hotwords,
                temperature=list(o.temperature), vad_filter=False,
            )
            segs = tuple(  # materialise here: faster-whisper decodes lazily
                Segment(
                    s.start, s.end, s.text.strip(), s.avg_logprob, s.no_speech_prob,
                    tuple(Word(w.start, w.end, w.word.strip(), w.probability)
                          for w in (s.words or ())),
                )
                for s in segments
            )
        text = " ".join(s.text for s in segs if s.text).strip()
        return Transcript(text, info.language, float(info.language_probability),
                          float(info.duration), segs)

    def detect_language(self, audio: Audio) -> tuple[str, float]:
        if not self.multilingual:
            return "en", 1.0
        with self._lock:
            language, prob, _ = self._model.detect_language(self._samples(audio))
        return language, float(prob)

    def nbest(self, audio: Audio, n: int, options: ASROptions | None = None) -> list[Hypothesis]:
        """The `n` best beam-search hypotheses for one utterance of at most 30 s."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        o = options or ASROptions()
        self._check(o)
        samples = self._samples(audio)
        if len(samples) > WINDOW_SECONDS * RATE:
            raise AudioError(f"N-best lists cover one utterance of at most 30 s; this audio is "
                             f"{len(samples) / RATE:.1f} s (nbest_segments takes any length)")
        return self._beam(samples, n, o)[1]

    def nbest_segments(self, audio: Audio, n: int, options: ASROptions | None = None
                       ) -> list[SegmentHypotheses]:
        """N-best lists for audio of any length. Audio that fits the window and decodes
        without a loop is one list (its first entry is `transcribe`'s text, the same beam
        search). Otherwise `transcribe`'s full path finds the segments, and each segment is
        decoded again alone for its alternatives; its list is led by the plain segment text,
        and alternatives that loop are dropped."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        o = options or ASROptions()
        self._check(o)
        samples = self._samples(audio)
        duration = len(samples) / RATE
        if len(samples) <= (o.window_seconds or WINDOW_SECONDS) * RATE:
            language, hyps = self._beam(samples, n, o)
            if not looping(hyps[0].text):
                return [SegmentHypotheses(0.0, duration, tuple(hyps), language)]
        plain = self._transcribe_full(samples, replace(o, word_timestamps=False))
        alone = replace(o, window_seconds=None, language=plain.language)
        out = []
        for seg in plain.segments:
            if not seg.text:
                continue
            lead = Hypothesis(seg.text, seg.avg_logprob, 0)
            start, end = max(0.0, seg.start - EDGE), min(duration, seg.end + EDGE)
            others: list[Hypothesis] = []
            if 0 < end - start <= WINDOW_SECONDS and n > 1:
                piece = samples[int(start * RATE): int(end * RATE)]
                others = [h for h in self._beam(piece, n, alone)[1]
                          if h.text and h.text != seg.text and not looping(h.text)]
            out.append(SegmentHypotheses(seg.start, seg.end, (lead, *others[: n - 1]),
                                         plain.language))
        return out

    def _beam(self, samples: np.ndarray, n: int, o: ASROptions
              ) -> tuple[str, list[Hypothesis]]:
        """(language, n-best) from one encoder pass over a window of `o.window_seconds`
        (30 s when unset) and one beam search without timestamps."""
        m = self._model
        frames = round((o.window_seconds or WINDOW_SECONDS) * 100)  # 100 mel frames per second
        with self._lock:
            features = self._pad(m.feature_extractor(samples), frames)
            encoded = m.encode(features)
            language = o.language
            if language is None:
                language = "en"
                if self.multilingual:
                    language = m.model.detect_language(encoded)[0][0][0][2:-2]
            tokenizer = self._tokenizer_cls(m.hf_tokenizer, self.multilingual,
                                            task=o.task, language=language)
            said = tokenizer.encode(" " + o.initial_prompt.strip()) if o.initial_prompt else []
            prompt = m.get_prompt(tokenizer, said[-(m.max_length // 2 - 1):],
                                  without_timestamps=True, hotwords=o.hotwords)
            # Cap output tokens by duration (speech rarely exceeds ~8 tokens/s): on short or
            # unclear audio Whisper can loop on one phrase until the 448-token limit.
            budget = min(m.max_length - len(prompt), math.ceil(16 + 12 * len(samples) / RATE))
            result = m.model.generate(
                encoded, [prompt], beam_size=max(n, o.beam_size), num_hypotheses=n,
                return_scores=True, length_penalty=1.0, max_length=len(prompt) + budget,
                suppress_blank=True, suppress_tokens=[-1],
            )[0]
        hyps = [Hypothesis(tokenizer.decode(ids).strip(), float(score), len(ids))
                for ids, score in zip(result.sequences_ids, result.scores, strict=True)]
        return language, sorted(hyps, key=lambda h: h.score, reverse=True)

    def _transcribe_window(self, samples: np.ndarray, o: ASROptions) -> Transcript:
        """One beam search over a short window (no timestamps, no fallback: fast)."""
        if o.word_timestamps:
            raise ValueError("word timestamps need the full 30 s window (window_seconds=None)")
        language, (best,) = self._beam(samples, 1, o)
        duration = len(samples) / RATE
        segment = Segment(0.0, duration, best.text, best.score, 0.0)
        return Transcript(best.text, language, 1.0, duration, (segment,) if best.text else ())

    def read_within(self, audio: Audio, phrases: Sequence[str], heard: str,
                    options: ASROptions | None = None) -> tuple[Hypothesis, Hypothesis]:
        """(`heard`, Whisper's best reading of `audio` spelled only with the tokens of
        `phrases` and punctuation), both scored by the model's own mean token
        log-probability. The closed reading is a beam search with every other token
        suppressed; its beam scores are renormalised over the tokens left, so both texts are
        scored again by forced decoding over the full vocabulary (CTranslate2's `align`, as
        faster-whisper scores its words), which makes the two comparable."""
        if not heard.strip():
            raise ValueError("nothing heard to compare the closed reading with")
        o = options or ASROptions()
        self._check(o)
        samples = self._samples(audio)
        window = o.window_seconds or WINDOW_SECONDS
        if len(samples) > window * RATE:
            window = WINDOW_SECONDS
        if len(samples) > window * RATE:
            raise AudioError(f"a closed reading covers at most 30 s; this audio is "
                             f"{len(samples) / RATE:.1f} s")
        m = self._model
        ctranslate2 = require("ctranslate2", "asr")
        with self._lock:
            encoded = m.encode(self._pad(m.feature_extractor(samples), round(window * 100)))
            language = o.language or ("en" if not self.multilingual else
                                      m.model.detect_language(encoded)[0][0][0][2:-2])
            tokenizer = self._tokenizer_cls(m.hf_tokenizer, self.multilingual,
                                            task=o.task, language=language)
            prompt = m.get_prompt(tokenizer, [], without_timestamps=True)
            closed = m.model.generate(
                encoded, [prompt], beam_size=o.beam_size, return_scores=True,
                max_length=len(prompt) + READING_TOKENS, suppress_blank=True,
                suppress_tokens=self._suppressed(tokenizer, phrases, language),
            )[0].sequences_ids[0]
            said = tokenizer.encode(" " + " ".join(heard.split()))
            texts = [said, closed or [tokenizer.eot]]
            both = ctranslate2.StorageView.from_array(np.repeat(np.array(encoded), 2, axis=0))
            frames = len(samples) // m.feature_extractor.hop_length
            scored = m.model.align(both, tokenizer.sot_sequence, texts, [frames] * 2)
        means = [float(np.mean(np.log(np.maximum(np.asarray(r.text_token_probs), 1e-12))))
                 for r in scored]
        return (Hypothesis(heard.strip(), means[0], len(said)),
                Hypothesis(tokenizer.decode(closed).strip(), means[1], len(closed)))

    def _suppressed(self, tokenizer: Any, phrases: Sequence[str], language: str) -> list[int]:
        """Every text token that no spelling of `phrases` (as written, capitalised, title
        case; after a space or not) nor punctuation uses."""
        key = (tuple(phrases), language)
        if key not in self._closed:
            kept: set[int] = set()
            for phrase in phrases:
                for form in {phrase, phrase.capitalize(), phrase.title()}:
                    kept.update(tokenizer.encode(form))
                    kept.update(tokenizer.encode(" " + form))
            for mark in PUNCTUATION:
                kept.update(tokenizer.encode(mark))
            self._closed[key] = [t for t in range(tokenizer.eot) if t not in kept]
        return self._closed[key]

    def align(self, audio: Audio, text: str) -> tuple[Word, ...]:
        """Forced alignment: when each word of a known `text` is spoken in `audio` (one
        utterance of at most 30 s), from Whisper's cross-attention (the same DTW that gives
        word timestamps, but over the given words instead of Whisper's own transcript)."""
        if not text.strip():
            raise ValueError("nothing to align: the text is empty")
        samples = self._samples(audio)
        if len(samples) > WINDOW_SECONDS * RATE:
            raise AudioError(f"alignment covers one utterance of at most 30 s; this audio is "
                             f"{len(samples) / RATE:.1f} s")
        m = self._model
        with self._lock:
            features = self._pad(m.feature_extractor(samples), round(WINDOW_SECONDS * 100))
            encoded = m.encode(features)
            tokenizer = self._tokenizer_cls(m.hf_tokenizer, self.multilingual,
                                            task="transcribe",
                                            language="en" if self.multilingual else None)
            ids = tokenizer.encode(" " + " ".join(text.split()))
            frames = len(samples) // m.feature_extractor.hop_length
            (words,) = m.find_alignment(tokenizer, [ids], encoded, frames)
        duration = len(samples) / RATE
        return tuple(Word(min(float(w["start"]), duration), min(float(w["end"]), duration),
                          w["word"].strip(), float(w["probability"])) for w in words)
