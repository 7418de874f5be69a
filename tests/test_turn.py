"""End-of-turn signals: the transcript's last word, and Smart Turn v3.2 on real audio (the
ONNX model read out of the pipecat-ai wheel at set-up)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from speechllm.audio import Audio, load
from speechllm.errors import AudioError
from speechllm.turn.text import looks_unfinished

from .conftest import ROOT, say


def test_a_transcript_ending_on_a_dangling_word_reads_unfinished():
    for text in ("What is the capital of", "Can you tell me how to?", "Set a timer for.",
                 "Add eggs and", "I was thinking,", "and then..."):
        assert looks_unfinished(text), text
    for text in ("What is the capital of France?", "Where are you from?", "What time is it",
                 "Set a timer for 10 minutes.", ""):
        assert not looks_unfinished(text), text


def test_smart_turn_hears_a_finished_question_and_a_trailing_preposition(voice):
    from speechllm.turn.smart_turn import SmartTurn

    model = SmartTurn()
    question = load(ROOT / "examples" / "question.wav")
    pause = Audio.silence(0.2, question.sample_rate)
    assert model.complete(Audio.concat([question, pause])) > 0.8
    fragment = say(voice, "I would like to know the weather in", pad=0.0)
    assert model.complete(Audio.concat([fragment, Audio.silence(0.2, fragment.sample_rate)])
                          ) < 0.2
    assert model.features(question).shape == (1, 80, 800)  # the last 8 s, 100 frames a second
    with pytest.raises(AudioError):
        model.complete(Audio.silence(0.0))


ANSWER = "The capital of France is Paris. It is known for the Eiffel Tower and its museums."


def test_the_judge_tells_backchannels_echo_and_unclear_words_from_interruptions():
    from speechllm.turn.barge_in import BargeInJudge

    judge = BargeInJudge(asr=None)  # type: ignore[arg-type]  # classify needs no recogniser
    kinds = {text: judge.classify(text, ANSWER).kind for text in (
        "Uh-huh.", "Yeah, okay.", "Mm-hmm.", "Oh, okay. I see.", "Right!",  # backchannels
        "the capital of France", "Eiffel Tower and its",  # its own voice coming back
        "Them.", "",  # a lone word that is no call to stop, or nothing
        "Wait, stop.", "Stop!", "No.", "What about Spain?", "What is the capital of Spain?",
        "Wait. Wait. Wait.")}
    assert kinds == {
        "Uh-huh.": "backchannel", "Yeah, okay.": "backchannel", "Mm-hmm.": "backchannel",
        "Oh, okay. I see.": "backchannel", "Right!": "backchannel",
        "the capital of France": "echo", "Eiffel Tower and its": "echo",
        "Them.": "unclear", "": "unclear",
        "Wait, stop.": "interruption", "Stop!": "interruption", "No.": "interruption",
        "What about Spain?": "interruption", "What is the capital of Spain?": "interruption",
        "Wait. Wait. Wait.": "interruption"}
    # Whisper's mishearings of robotic voices in barge-in sessions (bench/barge_in.py): a
    # backchannel heard as something that sounds like one stays one, a call to stop heard as
    # a made-up word still stops, and echo words left before a backchannel do not make it one
    misheard = {text: judge.classify(text, ANSWER).kind for text in (
        "All light.", "Yeah, okey.", "Cut it.", "Houdan.", "Whole don.",
        "Eiffel Tower. Got it.", "Tell me about Germany instead.", "Stop talking.")}
    assert misheard == {
        "All light.": "backchannel", "Yeah, okey.": "backchannel", "Cut it.": "backchannel",
        "Houdan.": "interruption", "Whole don.": "interruption",
        "Eiffel Tower. Got it.": "backchannel",
        "Tell me about Germany instead.": "interruption", "Stop talking.": "interruption"}
    # a hum Whisper cannot word comes out spelled ("mm-hm" as "M.M.A.C.M"): unclear, like a
    # lone word, so the answer goes on; laughing along is a backchannel; a call to stop in
    # capitals is still a call to stop
    spelled = {text: judge.classify(text, ANSWER).kind for text in (
        "M.M.A.C.M", "M-N-D-A", "MMACM", "D.S.", "Haha, ok.", "Ha ha, okay.", "STOP!", "NO!",
        "WAIT, WAIT!", "What about the USA?")}
    assert spelled == {
        "M.M.A.C.M": "unclear", "M-N-D-A": "unclear", "MMACM": "unclear", "D.S.": "unclear",
        "Haha, ok.": "backchannel", "Ha ha, okay.": "backchannel", "STOP!": "interruption",
        "NO!": "interruption", "WAIT, WAIT!": "interruption",
        "What about the USA?": "interruption"}
    # a clip cut while the user is still talking that begins with an acknowledgement waits
    # for their pause; one with a call to stop, or no acknowledgement first, does not wait
    cut = {text: judge.classify(text, ANSWER, finished=False).kind for text in (
        "Sure, I'm", "Okay, yeah the fact", "Okay, what about", "Tell me about", "Uh-huh.")}
    assert cut == {"Sure, I'm": "unclear", "Okay, yeah the fact": "unclear",
                   "Okay, what about": "interruption", "Tell me about": "interruption",
                   "Uh-huh.": "backchannel"}
    assert judge.classify("Sure, I'm", ANSWER).kind == "interruption"  # said, then a pause
    # a word heard as a call to stop is not matched away by sound ("not yet" ~ "yep")
    assert judge.classify("No, not yet, not yet.", ANSWER).kind == "interruption"
    own = BargeInJudge(asr=None, backchannels=["roger"])  # type: ignore[arg-type]
    assert own.classify("Roger.", ANSWER).kind == "backchannel"
    assert own.classify("Yeah, okay.", ANSWER).kind == "interruption"


def test_a_misheard_backchannel_reads_as_one_and_a_request_does_not(asr, voice):
    """Whisper read again with only the backchannels' words: "Got it, yeah." heard as "Drop
    it here." (a mishearing met in barge-in sessions) has an acknowledgement reading that
    explains the sound better than the mishearing, so it does not stop the answer; a request
    said and heard right has none near it, and stops it."""
    from speechllm.turn.barge_in import READING_MARGIN, BargeInJudge, words

    judge = BargeInJudge(asr)
    reading = judge.misheard_backchannel(say(voice, "Got it, yeah."), "Drop it here.")
    assert reading is not None and judge.is_backchannel(words(reading))
    request = say(voice, "Tell me about Rome.")
    assert judge.misheard_backchannel(request, "Tell me about Rome.") is None
    free, closed = asr.read_within(request, judge.listed, "Tell me about Rome.")
    assert closed.score < free.score - 2 * READING_MARGIN  # far off, not a near miss
    # the two readings are scored alike: the same words get the same score (one batch, the
    # same features; only rounding could tell the two rows apart)
    acknowledged = say(voice, "Yeah, okay.")
    free, closed = asr.read_within(acknowledged, judge.listed, "Yeah, okay.")
    assert words(closed.text) == ["yeah", "okay"] and abs(closed.score - free.score) < 0.05
    with pytest.raises(ValueError, match="nothing heard"):
        asr.read_within(acknowledged, judge.listed, " ")


def test_the_answers_echo_is_found_at_any_delay_and_taken_out(voice):
    """The assistant's audio mixed back 10 dB down, at a delay the server never learns: the
    fit explains nearly all of a pure-echo clip (also one that starts before the answer),
    little of a user speaking over it, and what it takes out leaves the user's words."""
    from speechllm.turn.echo import EchoPath, remove_echo

    answer = say(voice, ANSWER, pad=0.0).resample(16000).samples
    user = say(voice, "Wait, stop.", pad=0.0).resample(16000).samples
    gain = 10 ** (-10 / 20)
    clip = gain * answer[24000:24000 + len(user)]
    fit = remove_echo(clip, answer)
    assert fit.share > 0.99 and fit.offset == 24000 and abs(fit.gain - gain) < 0.01
    early = np.concatenate([np.zeros(1600, np.float32), gain * answer[:8000]])
    assert remove_echo(early, answer).offset == -1600  # heard 0.1 s before the answer began
    both = user + clip
    fit = remove_echo(both, answer)
    assert fit.share < 0.3  # the user is most of what was heard
    left = fit.residual - user
    assert np.dot(left, left) < 0.05 * np.dot(clip, clip)  # the echo is gone, the user stays
    assert remove_echo(user, answer).share < 0.1
    # the fitted path cleans the live stream: its sample 4000 is the answer's first
    stream = np.zeros(16000, np.float32)
    stream[4000:] = gain * answer[:12000]
    cleaned = EchoPath(lag=4000, gain=gain).cancel(stream[3000:], 3000, answer)
    assert np.abs(cleaned).max() < 1e-4


def test_the_judge_hears_backchannels_in_the_language_it_is_given(asr):
    """German speech (espeak-ng) with German backchannels: told the language, the judge lets
    "Alles klar." pass and still stops for "Stopp!"; a language the recogniser does not
    know is refused when the judge is made, not at a user's first word."""
    from speechllm.turn.barge_in import BargeInJudge

    def german(text: str) -> Audio:
        return load(subprocess.run(["espeak-ng", "-v", "de", "-s", "150", "--stdout", text],
                                   capture_output=True, check=True).stdout)

    judge = BargeInJudge(asr, ["ja", "genau", "alles klar", "okay"], language="de")
    answer = "Die Hauptstadt von Frankreich ist Paris."
    assert judge.judge(german("Alles klar."), answer).kind == "backchannel"
    assert judge.judge(german("Stopp!"), answer).kind == "interruption"
    with pytest.raises(ValueError, match="does not know language 'xx'"):
        BargeInJudge(asr, language="xx")
