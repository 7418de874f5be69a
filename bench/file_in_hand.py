"""`speechllm chat`'s in-process latency with the file in hand: ttft and ttfa of the default
cascade on each wav, medians over runs, to set beside the peer harness's stage floor
(../shared/peers/naive_cascade.py) measured in the same sitting.

    .venv/bin/python bench/file_in_hand.py --runs 2 q/*.wav
"""

from __future__ import annotations

import argparse
import statistics

from speechllm import Request, build_cascade
from speechllm.audio import load

SYSTEM = "You are a helpful voice assistant. Answer in one or two short sentences."  # the peers'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wavs", nargs="+")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    lm = build_cascade()
    audios = {w: load(w) for w in args.wavs}
    lm.respond(Request(audio=next(iter(audios.values())), system=SYSTEM, max_tokens=60))
    ttft, ttfa = [], []
    for _ in range(args.runs):
        for wav, audio in audios.items():
            t = lm.respond(Request(audio=audio, system=SYSTEM, max_tokens=60)).timings
            ttft.append(t.ttft or 0.0)
            ttfa.append(t.ttfa or 0.0)
            print(f"{wav}: ttft {1000 * (t.ttft or 0):.0f} ms, ttfa {1000 * (t.ttfa or 0):.0f} ms")
    print(f"medians over {len(ttfa)} turns: ttft {1000 * statistics.median(ttft):.0f} ms, "
          f"ttfa {1000 * statistics.median(ttfa):.0f} ms")


if __name__ == "__main__":
    main()
