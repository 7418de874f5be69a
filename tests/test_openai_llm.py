"""The OpenAI-compatible LLM backend against a real local server (llama-cpp-python's)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from speechllm import models
from speechllm.errors import ModelError
from speechllm.llm.base import GenerationOptions, chat
from speechllm.llm.openai_api import OpenAIChat, OpenAIConfig
from speechllm.speechlm import Message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model",
         str(models.ensure("qwen2.5-0.5b-instruct")), "--model_alias", "qwen", "--host",
         "127.0.0.1", "--port", str(port), "--n_ctx", "2048"],
        stdout=log, stderr=subprocess.STDOUT)  # a file: a full pipe would stall the server
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"llama_cpp.server exited: {log.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=1) as reply:
                if reply.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("llama_cpp.server did not start within 60 s")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_streams_a_correct_answer_from_the_server(server):
    llm = OpenAIChat(OpenAIConfig(base_url=server, model="qwen"))
    pieces = list(llm.stream_chat([Message("user", "What is the capital of France? One word.")],
                                  GenerationOptions(max_tokens=16)))
    assert len(pieces) >= 1
    assert "paris" in "".join(pieces).lower()


def test_cascade_uses_the_server_as_its_llm(server, asr, piper, question):
    from speechllm.cascade.pipeline import CascadeSpeechLM
    from speechllm.speechlm import Request

    lm = CascadeSpeechLM(asr, OpenAIChat(OpenAIConfig(base_url=server, model="qwen")), piper)
    r = lm.respond(Request(audio=question))
    assert "paris" in r.text.lower() and r.audio is not None


def test_unreachable_server_is_a_clear_error():
    llm = OpenAIChat(OpenAIConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", model="x",
                                  timeout=3))
    with pytest.raises(ModelError, match=r"LLM server at http://127\.0\.0\.1"):
        chat(llm, [Message("user", "hi")])


def test_tools_pass_through_to_the_server_and_its_calls_are_checked(server):
    from speechllm.cascade.pipeline import DEFAULT_SYSTEM
    from speechllm.llm.base import ToolSet, stream_tools
    from speechllm.tools import Tool, ToolCall, UseTool

    timer = Tool("set_timer", "Start a countdown timer.", {
        "type": "object", "properties": {"minutes": {"type": "number"},
                                         "label": {"type": "string"}},
        "required": ["minutes"]})
    weather = Tool("get_weather", "The current weather in a city.", {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    llm = OpenAIChat(OpenAIConfig(base_url=server, model="qwen"))
    ask = [Message("system", DEFAULT_SYSTEM), Message("user", "Set a timer for ten minutes.")]
    options = GenerationOptions(max_tokens=64)
    # a named choice: the server decodes the call and streams it as tool_calls (repeating
    # the name in every piece, which must not be read as a longer name)
    named = list(stream_tools(llm, ask, options, ToolSet((weather, timer), UseTool("set_timer"))))
    assert len(named) == 1 and isinstance(named[0], ToolCall)
    assert named[0].name == "set_timer" and named[0].args()["minutes"] == 10
    # "auto": llama-cpp-python's server leaves the model's call as text; it is read as a call
    auto = list(stream_tools(llm, ask, options, ToolSet((weather, timer))))
    assert [type(x) for x in auto] == [ToolCall] and auto[0].name == "set_timer"
    plain = list(stream_tools(llm, [ask[0], Message("user", "What is the capital of France?")],
                              options, ToolSet((weather, timer))))
    assert all(isinstance(x, str) for x in plain) and "Paris" in "".join(plain)
