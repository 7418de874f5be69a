"""Everything post-processing needs, computed once per utterance and kept in a JSON Lines
cache, so that selection rules can be tuned and judged without decoding again (issue 44).

Per utterance: the reference, the N-best lists the cascade uses (`nbest_segments`, whisper-base,
5-best, the cascade's ASR options), each hypothesis's ASR score and Gemma 3 270M log-likelihood
(the rescorer's prompt), and the generative corrector's answer (Qwen2.5 0.5B). Sets: the real
sentences (../shared/data/real-sentences), FSDD, and the synthetic commands and questions of
bench/postprocess_wer.py clean, at 10 dB and 0 dB white noise, and through the telephone band.

    .venv/bin/python bench/postprocess_cache.py -o runs/post_cache.jsonl [--sets real,fsdd,...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import FSDD, fsdd_items  # bench/ is on sys.path when run
from postprocess_wer import synthetic
from rich.progress import track

from speechllm.asr.faster_whisper import FasterWhisperASR
from speechllm.audio import Audio, load
from speechllm.cascade.pipeline import CascadeConfig
from speechllm.cascade.postprocess import GenerativeCorrector, NBestRescorer
from speechllm.data import read_manifest
from speechllm.eval.perturb import Telephone
from speechllm.llm.llama_cpp import LlamaCppChat, LlamaCppScorer

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-sentences"


def sets(names: list[str]) -> dict[str, list[tuple[str, Audio, str]]]:
    out: dict[str, list[tuple[str, Audio, str]]] = {}
    if "real" in names:
        out["real"] = [(str(it.audio.relative_to(REAL)), load(it.audio), it.text or "")
                       for it in read_manifest(REAL / "manifest.jsonl")]
    if "fsdd" in names:
        out["fsdd"] = [(it["audio"], load(FSDD / it["audio"]), it["text"]) for it in fsdd_items()]
    if any(n.startswith("synthetic") for n in names):
        made = synthetic()
        clean = made["synthetic clean"]
        made["synthetic telephone"] = [(Telephone().apply(a, seed=i), t)
                                       for i, (a, t) in enumerate(clean)]
        for name, rows in made.items():
            key = name.replace("synthetic ", "synthetic-").replace(" dB", "db")
            if key in names or "synthetic" in names:
                out[key] = [(f"{key}/{i}", a, t) for i, (a, t) in enumerate(rows)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--sets", default="real,fsdd,synthetic")
    ap.add_argument("--no-correct", action="store_true", help="skip the generative corrector")
    args = ap.parse_args()
    asr = FasterWhisperASR("whisper-base")
    rescorer = NBestRescorer(LlamaCppScorer(), 0.0)
    corrector = None if args.no_correct else GenerativeCorrector(LlamaCppChat())
    options = CascadeConfig().asr
    done = set()
    if args.output.is_file():  # resumable: finished utterances are kept
        done = {(r["set"], r["id"]) for r in map(json.loads, args.output.read_text().splitlines())}
    with args.output.open("a") as cache:
        for name, rows in sets(args.sets.split(",")).items():
            for key, audio, ref in track(rows, description=name):
                if (name, key) in done:
                    continue
                parts = []
                for p in asr.nbest_segments(audio, 5, options):
                    scored = rescorer.rank(p.hypotheses)
                    lm = {r.text: r.lm_score for r in scored}
                    parts.append({"start": p.start, "end": p.end, "hyps": [
                        {"text": h.text, "asr": h.score, "lm": lm[h.text]}
                        for h in p.hypotheses]})
                row = {"set": name, "id": key, "ref": ref, "parts": parts}
                if corrector is not None:
                    row["correct"] = [corrector.select(
                        [_hyp(h) for h in part["hyps"]]) for part in parts]
                cache.write(json.dumps(row) + "\n")
                cache.flush()


def _hyp(h: dict):
    from speechllm.asr.base import Hypothesis
    return Hypothesis(h["text"], h["asr"], 0)


if __name__ == "__main__":
    main()
