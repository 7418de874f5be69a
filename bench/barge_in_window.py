"""Which encoder window should the barge-in judge use? Its probes replayed offline.

Each probe of a split (bench/barge_in.py's voices and phrases) is mixed over the assistant's
answer at -10 dB, as a microphone near the loudspeaker hears it; the echo is then taken out by
its known path (as the server does once it has fitted one) and the judge decides. Reported
per window: backchannels judged interruptions, interruptions not judged so, and the time per
clip. No server, no timing of turns: this isolates what the window does to the words heard.

    .venv/bin/python bench/barge_in_window.py --split dev --windows 4,6,8,10
    .venv/bin/python bench/barge_in_window.py --split dev-2 --windows 8 --prompt "Uh-huh. Yeah."
    .venv/bin/python bench/barge_in_window.py --split dev-2,held-out-3 --windows 8 --cut 0.6

`--cut S` also judges each probe of over S + 0.2 s cut after S seconds, as the server does
while the user is still talking (`finished=False`); a cut clip judged "unclear" counts as not
stopping (the server judges it again whole at the pause).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from barge_in import SPLITS
from pause_set import speak, trimmed

from speechllm.audio import Audio

ANSWER = ("The capital of France is Paris. It is known for the Eiffel Tower, the Louvre museum "
          "and its cafes. Paris has a population of more than two million people, and the "
          "river Seine runs through the middle of the city.")
RATE = 16000


def main() -> None:
    from speechllm.asr.faster_whisper import FasterWhisperASR
    from speechllm.tts.base import synthesize
    from speechllm.tts.piper import PiperOptions, PiperTTS
    from speechllm.turn.barge_in import BargeInJudge

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="dev", help=f"comma-separated, of {', '.join(SPLITS)}")
    parser.add_argument("--cut", type=float, default=None,
                        help="also judge each probe cut after this many seconds")
    parser.add_argument("--margin", type=float, default=None,
                        help="the closed reading's margin (barge_in.READING_MARGIN)")
    parser.add_argument("--windows", default="4,8")
    parser.add_argument("--echo-db", type=float, default=-10.0)
    parser.add_argument("--prompt", default=None,
                        help="Whisper's initial prompt for the judge (its vocabulary)")
    args = parser.parse_args()
    if args.margin is not None:
        import speechllm.turn.barge_in as barge_in
        barge_in.READING_MARGIN = args.margin
    asr = FasterWhisperASR()
    piper = PiperTTS(options=PiperOptions(noise_scale=0.0, noise_w_scale=0.0))
    answer = synthesize(piper, ANSWER).resample(RATE).samples
    gain = 10 ** (args.echo_db / 20)
    rng = random.Random(0)
    clips = []  # (kind, voice, text, finished, heard, heard with the echo taken out)
    counts = {"backchannel": 0, "interruption": 0}
    for split in args.split.split(","):
        voices, backchannels, interruptions = SPLITS[split]
        for voice in voices:
            for kind, texts in (("backchannel", backchannels), ("interruption", interruptions)):
                for text in texts:
                    said = trimmed(speak(voice, text, piper)).samples
                    at = rng.randrange(RATE, len(answer) - 5 * RATE)
                    counts[kind] += 1
                    cuts = [len(said)]
                    if args.cut and len(said) > (args.cut + 0.2) * RATE:
                        cuts.append(int(args.cut * RATE))
                    for cut in cuts:
                        echo = gain * answer[at:at + cut + RATE // 2]
                        heard = echo.copy()
                        heard[int(0.3 * RATE):int(0.3 * RATE) + cut] += said[:cut]
                        clips.append((kind, voice, text, cut == len(said),
                                      Audio(heard.astype(np.float32), RATE),
                                      Audio((heard - echo).astype(np.float32), RATE)))
    for window in (float(w) for w in args.windows.split(",")):
        judge = BargeInJudge(asr, window_seconds=window)
        judge.options = replace(judge.options, initial_prompt=args.prompt)
        wrong = []
        began = time.perf_counter()
        for kind, voice, text, finished, heard, cleaned in clips:
            verdict = judge.judge(heard, ANSWER, Audio(answer, RATE), cleaned=cleaned,
                                  finished=finished)
            if (kind == "backchannel" and verdict.interrupts) or \
                    (kind == "interruption" and finished and not verdict.interrupts):
                wrong.append((kind, voice, text, finished, verdict.transcript, verdict.reading))
            elif verdict.reading or (not finished and kind == "interruption"
                                     and not verdict.interrupts):
                print("    (ok)", kind, voice, text, finished, verdict.kind, verdict.transcript,
                      verdict.reading)
        per_clip = (time.perf_counter() - began) / len(clips)
        stopped = sum(w[0] == "backchannel" for w in wrong)
        print(f"window {window:g} s: backchannel clips judged interruptions {stopped} "
              f"({counts['backchannel']} probes, {len(clips)} clips), whole interruptions "
              f"missed {len(wrong) - stopped}/{counts['interruption']}, "
              f"{per_clip * 1000:.0f} ms a clip", flush=True)
        for row in wrong:
            print("   ", row)


if __name__ == "__main__":
    main()
