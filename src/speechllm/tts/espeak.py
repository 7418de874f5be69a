"""espeak-ng formant TTS (the Debian `espeak-ng` program): robotic but light and multilingual."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from speechllm.audio import Audio, load
from speechllm.errors import MissingDependency, ModelError


@dataclass(frozen=True)
class EspeakOptions:
    voice: str = "en-us"  # any `espeak-ng --voices` name, with variants such as "en-us+f3"
    speed: int = 160  # words per minute
    pitch: int = 50  # 0-99


@functools.lru_cache(maxsize=4)
def known_voices(exe: str) -> tuple[dict[str, str], frozenset[str]]:
    """What `exe` knows, lower-cased: {voice name: its voice file, or the name itself for a
    language's other names (espeak-ng picks among their voices)}, and the variants by name
    and file."""
    def table(*args: str) -> list[tuple[list[str], str]]:
        out = subprocess.run([exe, *args], capture_output=True, text=True, check=False).stdout
        return [(line.split(), line) for line in out.splitlines()[1:] if len(line.split()) >= 5]

    listed = table("--voices")
    voices: dict[str, str] = {}
    for _, line in listed:
        for alias in re.findall(r"\(([^\s()]+) \d+\)", line):
            voices.setdefault(alias.lower(), alias)
    for cols, _ in listed:  # after the aliases: a voice's own names win
        for name in (cols[1], cols[3], cols[4], cols[4].rpartition("/")[2]):
            voices[name.lower()] = cols[4]
    variants = {name.lower().removeprefix("!v/") for cols, _ in table("--voices=variant")
                for name in (cols[3], cols[4])}
    return voices, frozenset(variants)


class EspeakTTS:
    deterministic = True  # the same text, the same audio: a dataset may render it once

    def __init__(self, options: EspeakOptions | None = None, binary: str = "espeak-ng") -> None:
        exe = shutil.which(binary)
        if exe is None:
            raise MissingDependency(f"{binary} is not installed; run: apt-get install espeak-ng")
        self._exe = exe
        self.options = options or EspeakOptions()
        # espeak-ng reads a name it does not know as the nearest one it does ("no-such-voice"
        # speaks Norwegian, an unknown "+variant" is dropped): refuse it instead
        voice, _, variant = self.options.voice.lower().partition("+")
        voices, variants = known_voices(exe)
        if voice not in voices or (variant and variant not in variants):
            raise ModelError(f"espeak-ng has no voice {self.options.voice!r}; `espeak-ng "
                             "--voices` lists the languages, `espeak-ng --voices=variant` the "
                             "+variants (as in en-us+f3)")
        # by its file: espeak-ng drops a +variant after a language whose file is named
        # otherwise (en-gb+f4, file gmw/en, spoke as plain en-gb)
        self._voice = voices[voice] + (f"+{variant}" if variant else "")
        self.sample_rate = 22050
        self.name = f"espeak-ng:{self.options.voice}"

    def stream(self, text: str) -> Iterator[Audio]:
        if not text.strip():
            return
        o = self.options
        proc = subprocess.run(
            [self._exe, "-v", self._voice, "-s", str(o.speed), "-p", str(o.pitch), "--stdout",
             text],
            capture_output=True, check=False,
        )
        if proc.returncode != 0 or not proc.stdout:
            err = proc.stderr.decode(errors="replace").strip()
            raise ModelError(f"espeak-ng failed for voice {o.voice!r}: {err or 'no audio'}")
        audio = load(proc.stdout, sample_rate=None)
        self.sample_rate = audio.sample_rate
        yield audio


def espeak_tts(voice: str | None) -> EspeakTTS:
    """The registry's factory: `voice` an espeak-ng voice name."""
    return EspeakTTS(EspeakOptions(voice=voice or "en-us"))
