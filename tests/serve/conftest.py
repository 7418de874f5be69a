"""A real `speechllm serve` process on loopback, with the embedded models (cascade: Whisper
base, Qwen2.5 0.5B, Piper), shared by the serving tests."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

EXE = Path(sys.executable).parent / "speechllm"
KEY = "test-key-123"
QUESTION = Path(__file__).resolve().parents[2] / "examples" / "question.wav"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/v1/realtime"


def start_server(tmp: Path, *args: str, key: str | None = KEY,
                 tls: ssl.SSLContext | None = None) -> Server:
    """`speechllm serve` on a free port, once /health answers; `tls`: the client context
    that trusts its certificate (the server then speaks https)."""
    port = free_port()
    log = tmp / f"serve-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SPEECHLLM_API_KEY", None)
    command = [str(EXE), "serve", "--port", str(port), *args]
    if key:
        command += ["--api-key", key]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url + "/health",
                                                               headers=headers), timeout=2,
                                        context=tls):
                return Server(url, process, log)
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    process.kill()
    pytest.fail(f"server did not start:\n{log.read_text()[-3000:]}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(60)
        except subprocess.TimeoutExpired:
            server.process.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """API key required; small caps so the protection tests stay cheap."""
    s = start_server(tmp_path_factory.mktemp("serve"), "--max-upload-mb", "2",
                     "--max-audio-seconds", "20", "--idle-timeout", "6", "--workers", "1")
    yield s
    stop_server(s)
