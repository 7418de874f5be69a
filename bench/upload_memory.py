"""Memory of a worst-case upload: a 10-minute 48 kHz stereo FLAC (under the 25 MB and 600 s
caps), stage by stage in this process, then six at once against a live server.

    ./dev python bench/upload_memory.py [--speech]

Prints RSS growth at the peak (sampled every 10 ms) and after each stage:
  decode   speechllm.audio.load of the upload to 16 kHz mono
  respond  the cascade's transcription of it (faint noise: the VAD finds no speech; with
           --speech, 590 s of the real sentences in ../shared/data, ~100 s of CPU)
  burst    six concurrent uploads to `speechllm serve --workers 2`, three bursts in a row
           (the server's RSS over its value after one warm-up upload)
Linux only (VmRSS from /proc).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real-sentences"
KEY = "bench-key"


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Peak:
    """The highest RSS of a process while the block runs."""

    def __init__(self, pid: int | str = "self") -> None:
        self.pid, self.value, self._done = pid, 0.0, threading.Event()

    def __enter__(self) -> Peak:
        self.value = rss_mb(self.pid)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._done.is_set():
            self.value = max(self.value, rss_mb(self.pid))
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def upload() -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    sf.write(buf, rng.integers(-3, 4, (48000 * 590, 2)).astype(np.int16), 48000,
             format="FLAC")
    return buf.getvalue()


def stages(data: bytes, speech: bool) -> None:
    from speechllm import approach
    from speechllm.audio import Audio, load
    from speechllm.errors import NoSpeechError
    from speechllm.speechlm import Request

    ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX, as the server does
    model = approach.build({"approach": "cascade"})
    for name in ("decode", "respond"):
        gc.collect()
        before = rss_mb()
        with Peak() as peak:
            if name == "decode":
                audio = load(data, 16000, 600)
            else:
                if speech:
                    files = sorted(p for p in REAL.glob("*/*.*") if p.suffix != ".jsonl")
                    x = np.concatenate([load(p, 16000).samples for p in files])
                    audio = Audio(np.tile(x, 2)[:16000 * 590], 16000)
                    before = rss_mb()
                with contextlib.suppress(NoSpeechError):  # the faint noise
                    model.respond(Request(audio=audio, intent="transcribe", want_audio=False))
        print(f"{name}: peak +{peak.value - before:.0f} MB, after +{rss_mb() - before:.0f} MB",
              flush=True)


def post_upload(url: str, data: bytes, key: str = KEY) -> int:
    """POST `data` as a transcription upload; the HTTP status."""
    boundary = "b0undary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1"
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"long.flac\"\r\nContent-Type: audio/flac\r\n\r\n").encode() \
        + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "/v1/audio/transcriptions", form, headers={
        "Authorization": f"Bearer {key}",
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return int(response.status)


def concurrently(url: str, data: bytes, n: int, key: str = KEY) -> list[int]:
    """`n` uploads of `data` at once; their statuses."""
    statuses: list[int] = []
    senders = [threading.Thread(target=lambda: statuses.append(post_upload(url, data, key)))
               for _ in range(n)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    return statuses


def burst(data: bytes) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.serve.conftest import start_server, stop_server

    server = start_server(Path(tempfile.mkdtemp()), "--workers", "2", key=KEY)
    try:
        post_upload(server.url, data)
        base = rss_mb(server.process.pid)
        for n in range(3):
            with Peak(server.process.pid) as peak:
                statuses = concurrently(server.url, data, 6)
            print(f"burst {n + 1}: statuses {statuses}, peak +{peak.value - base:.0f} MB, "
                  f"after {rss_mb(server.process.pid):.0f} MB (base {base:.0f})", flush=True)
    finally:
        stop_server(server)


if __name__ == "__main__":
    data = upload()
    print(f"upload: {len(data) / 2**20:.1f} MB FLAC, 590 s of 48 kHz stereo", flush=True)
    stages(data, "--speech" in sys.argv)
    burst(data)
