"""The web page in a real headless Chromium (Debian's, driven by Playwright), its microphone a
fake device fed from the recorded question: the page must show the transcript and the reply,
draw the turn's latency waterfall, and actually play the reply's audio."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import sync_playwright

from speechllm.audio import Audio, load, save

from .conftest import KEY, QUESTION

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def mic_file(tmp_path_factory) -> Path:
    """The question with silence around it, as Chromium's fake microphone plays it (once)."""
    q = load(QUESTION, 48000).samples
    x = np.concatenate([np.zeros(48000, np.float32), q, np.zeros(48000 * 4, np.float32)])
    path = tmp_path_factory.mktemp("mic") / "question-48k.wav"
    save(Audio(x, 48000), path)
    return path


def test_page_hears_answers_and_plays_the_reply(server, mic_file, tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.fail("Debian's chromium is missing: ./dev setup installs it (apt-get install "
                    "chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic_file}%noloop",
            "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{server.url}/?api_key={KEY}")
            page.click("#start")
            page.wait_for_function("window.speechllm.turns >= 1", timeout=120_000)
            page.wait_for_function("window.speechllm.playedSeconds > 0.5", timeout=60_000)
            stats = page.evaluate("window.speechllm")
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            log_text = page.inner_text("#log")
            bars = page.locator("#turns .turn .bar").count()
        finally:
            browser.close()
    assert not errors, errors
    assert stats["connected"] and not stats["errors"], stats["errors"]
    assert "capital of france" in stats["transcripts"][0].lower()
    assert "paris" in stats["replies"][0].lower()
    assert "capital of France" in log_text and "Paris" in log_text  # shown to the user
    assert stats["audioChunks"] >= 1 and stats["playedSeconds"] > 0.5  # heard, not just sent
    assert bars >= 4  # endpoint, vad, asr, prefill, decode, tts
    if os.environ.get("SPEECHLLM_SCREENSHOT"):  # to look at it (docs/serving-page.png)
        shutil.copy(tmp_path / "page.png", os.environ["SPEECHLLM_SCREENSHOT"])


def test_push_to_talk_in_the_page(server, mic_file):
    """Push-to-talk: audio goes out only while the button is held; release ends the turn."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic_file}%noloop",
            "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page()
            page.goto(f"{server.url}/?api_key={KEY}")
            page.check("input[value=ptt]")
            page.click("#start")
            page.wait_for_function("window.speechllm.connected", timeout=30_000)
            page.wait_for_timeout(1000)
            assert page.evaluate("window.speechllm.turns") == 0  # nothing sent, no turn
            page.hover("#talk")
            page.mouse.down()
            page.wait_for_timeout(4000)  # the question plays while the button is held
            page.mouse.up()
            page.wait_for_function("window.speechllm.turns >= 1", timeout=120_000)
            stats = page.evaluate("window.speechllm")
        finally:
            browser.close()
    assert "capital of france" in stats["transcripts"][0].lower()
    assert "paris" in stats["replies"][0].lower()


def test_page_runs_its_demo_tools_and_speaks_the_result(server, voice, tmp_path):
    """A spoken "what time is it?" with the page's demo tools on: the server streams the
    call, the page runs its clock, sends the result back and plays the answer using it."""
    from tests.conftest import say

    q = say(voice, "What time is it right now?").resample(48000).samples
    x = np.concatenate([np.zeros(48000, np.float32), q, np.zeros(48000 * 4, np.float32)])
    mic = tmp_path / "time-48k.wav"
    save(Audio(x, 48000), mic)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic}%noloop",
            "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{server.url}/?api_key={KEY}")
            page.check("#tools")
            page.click("#start")
            page.wait_for_function("window.speechllm.turns >= 2", timeout=120_000)
            page.wait_for_function("window.speechllm.playedSeconds > 0.5", timeout=60_000)
            stats = page.evaluate("window.speechllm")
            shown = page.inner_text("#log")
        finally:
            browser.close()
    assert not errors and not stats["errors"], (errors, stats["errors"])
    call = stats["toolCalls"][0]
    assert call["name"] == "get_time"
    minutes = call["output"]["time"].split(":")[1][:2]
    assert minutes in stats["replies"][1]  # the spoken answer uses the page's clock
    assert "calls get_time" in shown  # the call is in the transcript
