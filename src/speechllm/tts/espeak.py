"""espeak-ng formant TTS (the Debian `espeak-ng` program): robotic but light and multilingual."""

from __future__ import annotations

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


class EspeakTTS:
    def __init__(self, options: EspeakOptions | None = None, binary: str = "espeak-ng") -> None:
        exe = shutil.which(binary)
        if exe is None:
            raise MissingDependency(f"{binary} is not installed; run: apt-get install espeak-ng")
        self._exe = exe
        self.options = options or EspeakOptions()
        self.sample_rate = 22050
        self.name = f"espeak-ng:{self.options.voice}"

    def stream(self, text: str) -> Iterator[Audio]:
        if not text.strip():
            return
        o = self.options
        proc = subprocess.run(
            [self._exe, "-v", o.voice, "-s", str(o.speed), "-p", str(o.pitch), "--stdout", text],
            capture_output=True, check=False,
        )
        if proc.returncode != 0 or not proc.stdout:
            err = proc.stderr.decode(errors="replace").strip()
            raise ModelError(f"espeak-ng failed for voice {o.voice!r}: {err or 'no audio'}")
        audio = load(proc.stdout, sample_rate=None)
        self.sample_rate = audio.sample_rate
        yield audio
