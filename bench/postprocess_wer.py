"""WER before and after LLM post-processing of ASR output (N-best rescoring, generative error
correction), on the real FSDD recordings and on synthesised speech with added noise.

For each utterance Whisper produces a 5-best list once (language fixed to English); every
method then picks or writes a transcript from that same list:
  1-best        Whisper's own top hypothesis (the "before")
  rescore w=W   argmax asr_score + W * Gemma-3-270M log-likelihood per word
  correct       Qwen2.5-0.5B-Instruct rewrites the 5-best list into one transcript
  oracle        the hypothesis with the lowest WER (the ceiling for any selection method)

    .venv/bin/python bench/postprocess_wer.py [--model whisper-base] [--every 1]
"""

from __future__ import annotations

import argparse

from common import FSDD, fsdd_items, test_voices  # bench/ is on sys.path when run
from rich.progress import track

from speechllm.asr.base import ASROptions, Hypothesis
from speechllm.asr.faster_whisper import FasterWhisperASR
from speechllm.audio import Audio, load
from speechllm.cascade.postprocess import GenerativeCorrector, NBestRescorer
from speechllm.eval.perturb import WhiteNoise
from speechllm.llm.llama_cpp import LlamaCppChat, LlamaCppScorer
from speechllm.text_norm import wer
from speechllm.tts.base import synthesize

SENTENCES = [
    "Set a timer for fifteen minutes.",
    "What is the weather like in Boston tomorrow?",
    "Turn off the lights in the living room.",
    "Play some relaxing music please.",
    "How many ounces are in a pound?",
    "Remind me to call my mother at six.",
    "Who wrote the novel Pride and Prejudice?",
    "Add eggs, milk and bread to my shopping list.",
    "What time does the pharmacy close tonight?",
    "Translate good morning into French.",
    "Send a message to Peter saying I will be late.",
    "How far is the moon from the earth?",
    "Book a table for four at seven thirty.",
    "What is the square root of eighty one?",
    "Open the garage door.",
    "Tell me a fun fact about octopuses.",
]


def synthetic() -> dict[str, list[tuple[Audio, str]]]:
    voices = test_voices()
    clean = [(synthesize(v, s).resample(16000), s) for v in voices for s in SENTENCES]
    return {
        "synthetic clean": clean,
        "synthetic 10 dB": [(WhiteNoise(10).apply(a, seed=i), t) for i, (a, t) in enumerate(clean)],
        "synthetic 0 dB": [(WhiteNoise(0).apply(a, seed=i), t) for i, (a, t) in enumerate(clean)],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="whisper-base")
    ap.add_argument("--every", type=int, default=1)
    args = ap.parse_args()
    asr = FasterWhisperASR(args.model)
    scorer = LlamaCppScorer()
    methods = {"rescore w=0.3": NBestRescorer(scorer, 0.3),
               "rescore w=1.0": NBestRescorer(scorer, 1.0),
               "correct": GenerativeCorrector(LlamaCppChat())}
    items = fsdd_items()
    sets = {"FSDD (real)": [(load(FSDD / it["audio"]), it["text"])
                            for it in items[:: args.every]]}
    sets.update(synthetic())
    options = ASROptions(language="en")
    print(f"\n{args.model}, 5-best, language=en\n")
    header = ["1-best", *methods, "oracle"]
    print("| set | utterances | " + " | ".join(header) + " |")
    print("|---" * (len(header) + 2) + "|")
    for name, data in sets.items():
        refs = [t for _, t in data]
        picks: dict[str, list[str]] = {h: [] for h in header}
        for audio, ref in track(data, description=name):
            hyps: list[Hypothesis] = asr.nbest(audio, 5, options)
            picks["1-best"].append(hyps[0].text)
            for m, method in methods.items():
                picks[m].append(method.select(hyps))
            picks["oracle"].append(min((h.text for h in hyps), key=lambda h: wer([ref], [h])))
        cells = " | ".join(f"{wer(refs, picks[h]):.3f}" for h in header)
        print(f"| {name} | {len(data)} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
