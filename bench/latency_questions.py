"""The spoken questions of the realtime latency comparison (docs/realtime_latency.md):
espeak-ng reads each line of bench/texts/latency_questions.tsv into a 16 kHz mono wav trimmed
so that the file ends where the speech ends, as the peer harness in ../shared/peers expects.

    .venv/bin/python bench/latency_questions.py -o /tmp/q      # /tmp/q/dev01.wav ... held08.wav
    WAVS="$(ls /tmp/q/dev*.wav)" OUT=/tmp/s1 bash bench/realtime_sitting.sh
The `dev` questions may be used to choose settings; the `held` ones only to report them.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from speechllm.audio import Audio, load, save

TEXTS = Path(__file__).parent / "texts" / "latency_questions.tsv"
RATE = 16000
FLOOR = 0.005  # the harness's speech threshold (fraction of full scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [line.split("\t") for line in TEXTS.read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    for name, _, voice, text in rows:
        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", f.name, text],
                           check=True)
            audio = load(f.name).resample(RATE)
        loud = np.nonzero(np.abs(audio.samples) > FLOOR)[0]
        save(Audio(audio.samples[loud[0]: loud[-1] + 1], RATE), args.out / f"{name}.wav")
    print(f"wrote {len(rows)} questions to {args.out}")


if __name__ == "__main__":
    main()
