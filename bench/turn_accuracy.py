"""Does answering early change what the assistant hears? WER of the realtime session's
transcripts under several speculation policies: off (0: the turn ends after `end_silence`,
then ASR) and on after S seconds of silence (ASR on the audio at that pause, the turn ended by
that transcript's verdict), on the same recordings in the same run, each paired with the
first policy given.

Each recording is fed to the session's own turn detector (`serve.realtime.Turns`) in 20 ms
frames with 2 s of silence after it, on audio time (as if recognition were instant, so only
the segmentation and the audio recognised differ, not the machine's speed). The transcripts of
every turn in a recording are joined and scored against its text with the toolkit's
normalised WER. Real sentences have pauses of their own, so a recording may make several
turns under either policy.

    .venv/bin/python bench/turn_accuracy.py ../shared/data/real-sentences/manifest.jsonl \\
        /tmp/pauses/set.tsv --policies 0.2,0,0.032
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import track

from speechllm.asr.faster_whisper import FasterWhisperASR
from speechllm.audio import Audio, load
from speechllm.cascade.pipeline import CascadeConfig
from speechllm.errors import NoSpeechError
from speechllm.serve.realtime import Session, Turns
from speechllm.serve.settings import ServeSettings
from speechllm.text_norm import word_errors
from speechllm.turn.text import looks_unfinished
from speechllm.vad.base import speech_span
from speechllm.vad.silero import SileroVAD

FRAME = 320  # 20 ms at 16 kHz


@dataclass
class Fake:
    """What `Turns` reads from the server's services."""

    settings: ServeSettings
    vad: SileroVAD


def hear(asr: FasterWhisperASR, vad: SileroVAD, audio: Audio) -> str:
    """The cascade's recognition of a turn: VAD-trimmed, its ASR options."""
    config = CascadeConfig()
    try:
        start, end = speech_span(audio, vad, config.vad_pad)
    except NoSpeechError:
        return ""
    return asr.transcribe(audio.slice(start, end), config.asr).text.strip()


def turns_heard(asr: FasterWhisperASR, vad: SileroVAD, audio: Audio, after: float
                ) -> list[str]:
    settings = ServeSettings(speculate_after=after)
    speculate = after > 0
    turns = Turns(Fake(settings, vad), Session())  # type: ignore[arg-type]
    x = np.concatenate([np.zeros(8000, np.float32), audio.resample(16000).samples,
                        np.zeros(32000, np.float32)])
    heard: list[str] = []
    pending: str | None = None  # the speculative transcript, while the turn is paused
    for i in range(0, len(x), FRAME):
        for event in turns.feed(x[i:i + FRAME]):
            if event == "paused" and speculate:
                peeked = turns.peek()
                pending = hear(asr, vad, peeked) if peeked is not None else ""
            elif event == "resumed":
                pending = None
            elif event == "stopped":
                taken = turns.take()
                if pending is not None:
                    heard.append(pending)
                elif taken is not None:
                    heard.append(hear(asr, vad, taken))
                pending = None
        if speculate and turns.paused and pending is not None \
                and turns.settle(not looks_unfinished(pending)):
            turns.take()
            heard.append(pending)
            pending = None
    return [h for h in heard if h]


def items(path: Path) -> list[tuple[Path, str]]:
    if path.suffix == ".tsv":  # bench/pause_set.py's list
        rows = [line.split("\t") for line in path.read_text().splitlines() if line]
        return [(path.parent / r[0], r[4].replace(" | ", " ")) for r in rows]
    manifest = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(path.parent / r["audio"], r["text"]) for r in manifest]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sets", nargs="+", type=Path, help="manifest.jsonl or set.tsv files")
    parser.add_argument("--every", type=int, default=1, help="every n-th item")
    parser.add_argument("--policies", default="0,0.2", help="speculate_after values in "
                        "seconds (0: off); each is paired with the first")
    args = parser.parse_args()
    policies = [float(p) for p in args.policies.split(",")]
    asr, vad = FasterWhisperASR("whisper-base"), SileroVAD()
    print("| set | items | speculate_after | WER | paired difference with the first, 95% "
          "bootstrap |")
    print("|---|---:|---:|---:|---|")
    for path in args.sets:
        chosen = items(path)[:: args.every]
        scores: dict[float, list[tuple[int, int]]] = {p: [] for p in policies}
        for audio_path, text in track(chosen, description=path.parent.name):
            audio = load(audio_path)
            for after in policies:
                said = " ".join(turns_heard(asr, vad, audio, after))
                scores[after].append(word_errors(text, said))
        base = scores[policies[0]]
        counts = np.array([w for _, w in base])
        for after in policies:
            wer = sum(e for e, _ in scores[after]) / sum(w for _, w in scores[after])
            diffs = np.array([a[0] - b[0] for a, b in zip(scores[after], base, strict=True)])
            rng = np.random.default_rng(0)
            boot = [diffs[s].sum() / counts[s].sum()
                    for s in (rng.integers(0, len(diffs), len(diffs)) for _ in range(2000))]
            lo, hi = np.percentile(boot, [2.5, 97.5])
            print(f"| {path.parent.name} | {len(chosen)} | {after:g} | {wer:.4f} | "
                  f"{diffs.sum() / counts.sum():+.4f} [{lo:+.4f}, {hi:+.4f}]; "
                  f"{int((diffs != 0).sum())} items differ |", flush=True)


if __name__ == "__main__":
    main()
