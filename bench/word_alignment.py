"""How well `speechllm tokens align` finds each word: every word's span is cut out of its clip
and transcribed alone by Whisper base; a span that holds its word (and not half of the next)
comes back as that word. Two boundary sets, measured on the same clips in the same run:
- Whisper's forced alignment alone (each cut halfway between one word's end and the next
  word's start, Whisper's cross-attention timings),
- the same, each cut moved into the pause it reaches when there is one (`tokens align
  --pack 0`, clip by clip),
- the clips aligned several to a Whisper window, then moved into pauses (`tokens align`'s
  default, about 14 times faster).

    .venv/bin/python bench/word_alignment.py data/token_speak/manifest.jsonl --clips 60
"""

from __future__ import annotations

import argparse
from itertools import pairwise
from pathlib import Path

from speechllm.asr.base import ASROptions
from speechllm.asr.faster_whisper import FasterWhisperASR
from speechllm.audio import Audio, load
from speechllm.data import read_manifest
from speechllm.text_norm import normalize
from speechllm.tokens.align import WordTiming, align_packed, merge_to_words, packs, refine


def whisper_only(audio: Audio, words: list[WordTiming]) -> list[WordTiming]:
    cuts = [(end + start) / 2 for (_, _, end), (_, start, _) in pairwise(words)]
    bounds = [0.0, *cuts, audio.duration]
    return [(w, bounds[n], bounds[n + 1]) for n, (w, _, _) in enumerate(words)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--clips", type=int, default=60, help="First N clips of 2+ words.")
    parser.add_argument("--asr", default="whisper-base")
    args = parser.parse_args()
    items = [i for i in read_manifest(args.manifest) if len((i.text or "").split()) >= 2]
    whisper = FasterWhisperASR(args.asr)
    opts = ASROptions(language="en", temperature=(0.0,))
    heard = {"Whisper alignment alone": 0, "moved into pauses, clip by clip": 0,
             "moved into pauses, clips packed (tokens align)": 0}
    total = 0
    chosen = items[: args.clips]
    audios = [load(item.audio).resample(16000) for item in chosen]
    packed: list[list[WordTiming]] = []
    for group in packs(range(len(audios)), lambda n: audios[n].duration):
        packed += align_packed(whisper, [(audios[n], str(chosen[n].text)) for n in group])
    for item, audio, together in zip(chosen, audios, packed, strict=True):
        text = str(item.text)
        timed = merge_to_words(text, [(w.text, w.start, w.end)
                                      for w in whisper.align(audio, text)])
        for name, spans in zip(heard, (whisper_only(audio, timed), refine(audio, timed),
                                       together), strict=True):
            for word, start, end in spans:
                cut = audio.slice(start, end)
                said = whisper.transcribe(cut, opts).text
                heard[name] += normalize(said, digits=True) == normalize(word, digits=True)
        total += len(timed)
    print(f"{min(len(items), args.clips)} clips, {total} words, each span transcribed alone "
          f"by {args.asr}\n")
    print("| word boundaries | words heard as themselves | ratio to Whisper alone |")
    print("|---|---|---|")
    base = max(1, heard["Whisper alignment alone"])
    for name, n in heard.items():
        print(f"| {name} | {n}/{total} ({100 * n / total:.1f}%) | {n / base:.2f} |")


if __name__ == "__main__":
    main()
