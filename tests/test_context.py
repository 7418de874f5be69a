"""Context for contextual biasing, as users give it: the CLI's --context (a file or the text)
and a manifest's "context" field."""

from __future__ import annotations

import difflib

import pytest

from speechllm.speechlm import Context


def test_context_from_the_command_line_or_a_file(tmp_path):
    assert Context.read("Siobhan Gallagher, Okonkwo, tocilizumab") == Context(
        ("Siobhan Gallagher", "Okonkwo", "tocilizumab"))
    talk = "We were talking about the budget review with the finance team on Monday."
    assert Context.read(talk) == Context((), talk)
    listing = tmp_path / "names.txt"
    listing.write_text(f"Zbigniew\nAoife Brennan\n\n{talk}\n")
    assert Context.read(str(listing)) == Context(("Zbigniew", "Aoife Brennan"), talk)
    assert not Context() and Context(("x",))


def test_context_from_a_manifest_field():
    assert Context.of(["Nguyen", "Kowalczyk"]) == Context(("Nguyen", "Kowalczyk"))
    assert Context.of("the quarterly report") == Context((), "the quarterly report")
    assert Context.of({"phrases": ["Tadhg"], "text": "rehearsal"}) == Context(("Tadhg",),
                                                                             "rehearsal")
    assert Context.of(None) is None
    for bad in (5, ["ok", 3], {"names": ["x"]}):
        with pytest.raises(ValueError, match="context"):
            Context.of(bad)


NAMES = ["Zbigniew", "Aoife Brennan", "Terraform", "Siobhan Gallagher", "Theodora", "Wrocław",
         "Ferdinand", "Okonkwo"]


def test_a_listed_name_heard_as_its_sound_alike_is_put_back():
    from speechllm.cascade.phrases import PhraseSpotter

    spot = PhraseSpotter(0.8)
    assert spot.apply("Call Z. Big New and ask about the shipment.", NAMES) == \
        "Call Zbigniew and ask about the shipment."
    assert spot.apply("The meeting with Hefa Brennan moved to Tuesday.", NAMES) == \
        "The meeting with Aoife Brennan moved to Tuesday."
    assert spot.apply("Doctor Akankwa's office is closed.", NAMES) == \
        "Doctor Okonkwo's office is closed."  # the possessive and the full stop stay


def test_common_words_are_not_turned_into_listed_terms():
    """Runs of common words can sound like a listed term ("timer for" / Terraform); only runs
    the recogniser wrote as a name are candidates, and a sentence's first word is not one."""
    from speechllm.cascade.phrases import PhraseSpotter

    spot = PhraseSpotter(0.8)
    for text in ("Set a timer for fifteen minutes.", "What is the weather like in Boston?",
                 "Book a table for four at seven thirty.", "Theodore will call.",
                 "The weather is nice and the coffee is hot."):
        assert spot.apply(text, NAMES) == text
    assert spot.apply("Zbigniew is here.", NAMES) == "Zbigniew is here."  # already right


def test_the_second_pass_brings_in_the_name_and_nothing_else():
    """Where the biased pass differs, only stretches that bring a listed phrase in are taken;
    its other changes (a dropped article, punctuation) are not."""
    from speechllm.cascade.phrases import take_phrases

    first = "Call Wen Slice about the parking permit."
    second = "Call Wenceslas about a parking permit"
    assert take_phrases(first, second, ["Wenceslas"]) == \
        "Call Wenceslas about the parking permit."
    assert take_phrases(first, second, ["Okonkwo"]) == first  # no listed word came in
    # a listed name is not written over a name that sounds nothing like it
    said = "Not at this particular case, Tom, apologized Whittemore."
    assert take_phrases(said, said.replace("Whittemore", "Okonkwo"), ["Okonkwo"]) == said
    assert take_phrases("Call Z. Big New today.", "Call Zbigniew today.", ["Zbigniew"]) == \
        "Call Zbigniew today."
    # a listed name is brought in with a possessive too (Whisper base on Piper, dev set)
    assert take_phrases("Remind me to water Zimar's plants tonight.",
                        "Remind me to water Xiomara's plants tonight.", ["Xiomara"]) == \
        "Remind me to water Xiomara's plants tonight."


def test_the_shortlist_holds_the_sound_alikes_not_the_rest():
    from speechllm.cascade.phrases import Shortlist

    short = Shortlist(size=3, floor=0.6).pick("The meeting with Hefa Brennan moved to Tuesday.",
                                              NAMES)
    assert short[0] == "Aoife Brennan"
    assert "Okonkwo" not in short and "Wrocław" not in short
    assert Shortlist(size=3).pick("Zbigniew is here.", ["Zbigniew"]) == []  # heard already


def test_short_names_do_not_crowd_the_said_one_off_the_shortlist():
    """Whisper base heard Piper's "The package from Ouagadougou arrived damaged." as below.
    Among the 100 phrases listed with it (the biasing dev set's), short names whose consonants
    match some run of words by chance ("Tadhg", "Cathal") used to fill the five places; the
    name's vowels as well tell them apart."""
    import json
    from pathlib import Path

    from speechllm.cascade.phrases import Shortlist

    rows = [json.loads(x) for x in (Path(__file__).parents[1] / "bench" / "texts" /
                                    "biasing.jsonl").read_text().splitlines()]
    listed = next(r["context"] for r in rows if r["bias"] == ["Ouagadougou"])
    assert len(listed) == 100
    short = Shortlist(size=5).pick("The package from Wagadudu arrived damaged.", listed)
    assert "Ouagadougou" in short, short


def test_the_cascade_uses_the_context_it_is_given(asr, chat_llm, voice):
    """Through the cascade (intent transcribe, as `speechllm eval` and the transcription route
    run it): a rare name is heard right with the context list and not without it."""
    from speechllm.cascade.pipeline import CascadeSpeechLM
    from speechllm.speechlm import Request

    from .conftest import say

    lm = CascadeSpeechLM(asr, chat_llm)
    clip = say(voice, "Call Zbigniew and ask about the shipment.")
    bare = lm.respond(Request(audio=clip, intent="transcribe", want_audio=False)).text
    told = lm.respond(Request(audio=clip, intent="transcribe", want_audio=False,
                              context=Context(tuple(NAMES)))).text
    assert "zbigniew" not in bare.lower(), bare
    assert "zbigniew" in told.lower() and "shipment" in told.lower(), told
    # the list changed the name and nothing else: every stretch that differs holds it
    a, b = bare.split(), told.split()
    for op, _, _, j1, j2 in difflib.SequenceMatcher(a=a, b=b).get_opcodes():
        assert op == "equal" or "zbigniew" in " ".join(b[j1:j2]).lower(), (bare, told)


def test_a_sure_first_pass_is_not_heard_again(asr, voice):
    """Where Whisper is sure of every segment (a real read sentence), a context list costs no
    second pass and cannot change a word; where it is unsure (a rare name it mishears), the
    clip is heard again with the shortlist."""
    from dataclasses import dataclass, field

    from speechllm.asr.base import ASROptions
    from speechllm.audio import load
    from speechllm.cascade.phrases import Shortlist, hear_listed
    from speechllm.cascade.pipeline import CascadeConfig

    from .conftest import ROOT, say

    @dataclass
    class Counted:  # the real recogniser, its passes counted
        passes: list[ASROptions] = field(default_factory=list)

        def transcribe(self, audio, options):
            self.passes.append(options)
            return asr.transcribe(audio, options)

    options = CascadeConfig().asr  # as the cascade's first pass hears
    real = ROOT.parent / "shared" / "data" / "real-sentences" / "ljspeech" / "LJ001-0001.flac"
    for clip, unsure in ((load(real), False),
                         (say(voice, "Call Zbigniew and ask about the shipment."), True)):
        first = asr.transcribe(clip, options)
        least = min(s.avg_logprob for s in first.segments)
        assert (least < Shortlist.sure) == unsure, (first.text, least)
        counted = Counted()
        text = hear_listed(counted, clip, options, first.text, NAMES, Shortlist(), least)
        assert len(counted.passes) == int(unsure), first.text
        assert ("zbigniew" in text.lower()) == unsure, text  # the unsure one gets it right
        if not unsure:
            assert text == first.text
