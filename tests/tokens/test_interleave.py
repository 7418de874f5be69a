"""Word-by-word speaking: word timings from Whisper's forced alignment (`speechllm tokens
align`, real Whisper on espeak-ng speech with pauses of known length), and a token LM trained
with `interleave_words` (real Gemma 3 270M, units fitted here) that writes each word's units
after that word's text, including for a word order it never heard."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest

from speechllm.audio import Audio, load, save
from speechllm.tokens.align import merge_to_words, unit_spans
from speechllm.tokens.model import TokenLMConfig, TokenSpeechLM, word_floor_units
from speechllm.tokens.semantic import KMeansUnits, UnitsConfig
from speechllm.tokens.unit2speech import U2SConfig, UnitToSpeech
from speechllm.train import ConfigError, load_config, train
from speechllm.tts.espeak import EspeakOptions, EspeakTTS
from tests.tokens.unit_distance import unit_distance

WORDS = ["two", "seven", "nine"]
HELD_OUT = ("nine", "two")  # a word order the model never hears


def _trim(audio: Audio) -> Audio:
    """The word without espeak's leading and trailing silence, so the pauses are known."""
    loud = np.flatnonzero(np.abs(audio.samples) > 0.02)
    return Audio(audio.samples[loud[0]: loud[-1] + 1], audio.sample_rate)


@pytest.fixture(scope="module")
def phrases(tmp_path_factory):
    root = tmp_path_factory.mktemp("interleave")
    voice = EspeakTTS(EspeakOptions("en-us", speed=160))
    said = {w: _trim(Audio.concat(list(voice.stream(w))).resample(16000)) for w in WORDS}
    rng = np.random.default_rng(0)
    rows, pauses = [], {}
    for n, pair in enumerate(p for p in permutations(WORDS, 2) if p != HELD_OUT):
        gap = float(rng.uniform(0.15, 0.3))
        silence = Audio(np.zeros(round(gap * 16000), np.float32), 16000)
        lead = Audio(np.zeros(1600, np.float32), 16000)
        save(Audio.concat([lead, said[pair[0]], silence, said[pair[1]], lead]),
             root / f"{n}.wav")
        start = 0.1 + said[pair[0]].duration
        pauses[f"{n}.wav"] = (start, start + gap)
        rows.append({"audio": f"{n}.wav", "text": " ".join(pair), "tasks": [{"speak": True}]})
    for w, audio in said.items():
        save(audio, root / f"{w}.wav")
    (root / "speak.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    exe = str(Path(sys.executable).parent / "speechllm")
    done = subprocess.run([exe, "tokens", "align", str(root / "speak.jsonl"), "--asr",
                           "whisper-tiny.en"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return root, said, pauses, done.stdout


def test_align_puts_each_word_boundary_in_the_pause(phrases):
    root, _, pauses, stdout = phrases
    assert f"aligned {len(pauses)} of {len(pauses)} clips" in stdout
    rows = [json.loads(x) for x in (root / "speak.aligned.jsonl").read_text().splitlines()]
    assert len(rows) == len(pauses)
    for row in rows:
        (w1, s1, e1), (w2, s2, e2) = row["words"]
        assert f"{w1} {w2}" == row["text"]
        duration = load(root / row["audio"]).duration
        assert s1 == 0.0 and e1 == s2 and abs(e2 - duration) < 0.01  # cover the clip
        quiet_from, quiet_to = pauses[row["audio"]]
        assert quiet_from - 0.02 <= e1 <= quiet_to + 0.02, (row, quiet_from, quiet_to)


def test_clips_aligned_together_match_clips_aligned_one_by_one(phrases):
    # the default packs the short clips into one Whisper window; one by one is the reference
    root, _, _, _ = phrases
    exe = str(Path(sys.executable).parent / "speechllm")
    done = subprocess.run([exe, "tokens", "align", str(root / "speak.jsonl"), "--asr",
                           "whisper-tiny.en", "--pack", "0", "-o", str(root / "single.jsonl")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    single = [json.loads(x) for x in (root / "single.jsonl").read_text().splitlines()]
    packed = [json.loads(x) for x in (root / "speak.aligned.jsonl").read_text().splitlines()]
    assert [r["audio"] for r in single] == [r["audio"] for r in packed]
    for one, many in zip(single, packed, strict=True):
        assert [w for w, _, _ in one["words"]] == [w for w, _, _ in many["words"]]
        assert np.allclose([t for _, a, b in one["words"] for t in (a, b)],
                           [t for _, a, b in many["words"] for t in (a, b)], atol=0.03)


def test_whisper_words_merge_back_into_the_texts_words():
    pieces = [("Hello", 0.0, 0.3), (",", 0.3, 0.3), ("world", 0.35, 0.7), (".", 0.7, 0.7)]
    assert merge_to_words("Hello, world.", pieces) == [("Hello,", 0.0, 0.3),
                                                       ("world.", 0.35, 0.7)]
    with pytest.raises(ValueError, match="cannot match"):
        merge_to_words("Hello there", pieces)
    spans = unit_spans(30, 25.0, [("a", 0.0, 0.4), ("b", 0.4, 0.9), ("c", 0.9, 1.2)])
    assert spans == [(0, 10), (10, 22), (22, 30)]  # contiguous, covering every unit


@pytest.fixture(scope="module")
def interleaved(phrases):
    root, said, _, _ = phrases
    units = KMeansUnits.fit(list(said.values()) * 2, UnitsConfig(encoder="whisper-tiny.en",
                                                                 k=24))
    UnitToSpeech.train(list(said.values()), units, U2SConfig.for_units(
        units, channels=32, layers=2, steps=10, batch_size=4)).save(root / "voice")
    config = {
        "model": {"approach": "tokens", "units": "voice", "llm": "gemma-3-270m",
                  "lora_rank": 8, "interleave_words": True},
        "data": {"manifest": "speak.aligned.jsonl"},
        "train": {"output": "out", "steps": 60, "batch_size": 5, "lr": 0.01, "warmup": 4,
                  "lora_lr": 0.002, "checkpoint_every": 60}}
    (root / "config.json").write_text(json.dumps(config))
    result = train(load_config(root / "config.json"))
    return TokenSpeechLM.from_pretrained(result.output), units


def test_interleaved_model_says_each_word_as_that_words_units(phrases, interleaved):
    _, said, _, _ = phrases
    model, units = interleaved
    assert model.config.interleave_words  # saved with the model
    recorded = {w: units.encode(a)[0].tolist() for w, a in said.items()}
    right, total = 0, 0
    for text in (" ".join(HELD_OUT), "two seven"):
        per_word = model.speak_words(text)
        assert len(per_word) == 2 and all(per_word)  # one span of units per word
        assert model.speak_units(text) == [u for w in per_word for u in w]
        for word, spoken in zip(text.split(), per_word, strict=True):
            total += 1
            right += all(unit_distance(spoken, recorded[word]) < unit_distance(spoken, recorded[w])
                         for w in WORDS if w != word)
    assert right >= 3, (right, total)
    assert model.say(" ".join(HELD_OUT)).duration > 0.2


def test_no_word_is_spoken_shorter_than_the_floor(interleaved):
    model, _ = interleaved
    # the default floor is 120 ms at the units' rate: these units come at 25/s
    assert model.config.min_word_units is None and model.word_floor == 3
    natural = model.speak_words("nine two", min_word_units=0)
    longest = max(map(len, natural))
    stretched = model.speak_words("nine two", min_word_units=longest + 4)
    assert all(len(w) >= longest + 4 for w in stretched)  # every word, the last one too
    assert all(len(w) >= 3 for w in model.speak_words("seven nine"))
    # a floor above the cap: the cap wins, so a model still stops
    assert sum(map(len, model.speak_words("two nine", max_units=5, min_word_units=50))) <= 5


def test_phrases_spoken_together_say_what_each_says_alone(interleaved):
    model, _ = interleaved
    # different lengths, so rows are given text while others write units and leave early
    texts = ["nine two", "two seven nine two seven", "seven", "two nine seven"]
    alone = [model.speak_words(text) for text in texts]
    assert [len(words) for words in alone] == [2, 5, 1, 3]
    for size in (2, 8):
        assert model.speak_words_batch(texts, batch_size=size) == alone
    assert model.speak_units_batch(texts) == [[u for w in words for u in w] for words in alone]
    # the floor and the phrase's cap hold for every row of a batch
    capped = model.speak_words_batch(texts, max_units=5, min_word_units=50)
    assert all(sum(map(len, words)) == 5 for words in capped)
    with pytest.raises(ValueError, match="batch_size"):
        model.speak_words_batch(texts, batch_size=0)


def test_cli_says_a_file_of_phrases_in_batches_and_keeps_what_it_finished(interleaved,
                                                                          tmp_path):
    from speechllm.audio import load

    model, _ = interleaved
    saved = model.save_pretrained(tmp_path / "model")
    (tmp_path / "lines.txt").write_text("nine two\n\ntwo seven nine\nseven\n")
    exe = str(Path(sys.executable).parent / "speechllm")
    command = [exe, "tokens", "say", str(saved), "--lines", str(tmp_path / "lines.txt"),
               "-o", str(tmp_path / "said"), "--batch-size", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "said/manifest.jsonl").read_text()
            .splitlines()]
    assert [r["text"] for r in rows] == ["nine two", "two seven nine", "seven"]  # blank skipped
    lengths = [load(tmp_path / "said" / r["audio"]).duration for r in rows]
    assert all(seconds > 0.1 for seconds in lengths)
    assert lengths[1] > lengths[2]  # three words take longer than one
    (tmp_path / "said" / rows[1]["audio"]).unlink()  # as if interrupted before it
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "said 3 of 3 phrases (2 kept from before)" in again.stdout
    assert (tmp_path / "said" / rows[1]["audio"]).is_file()
    (tmp_path / "blank.txt").write_text("\n \n")
    blank = subprocess.run([*command[:5], str(tmp_path / "blank.txt"), *command[6:]],
                           capture_output=True, text=True, timeout=600)
    assert blank.returncode != 0 and "no phrase to say" in blank.stderr


def test_the_default_word_floor_is_the_same_duration_at_any_unit_rate(interleaved):
    model, _ = interleaved
    rate = model.units.info.rates[0]
    for faster in (1, 2, 4):  # 50/s units (stride 1) need twice the units for 120 ms
        assert word_floor_units(rate * faster) == model.word_floor * faster
    default = model.config
    try:  # a model saved with a count (as before the default scaled) keeps its count
        model.config = TokenLMConfig.from_dict({**default.to_dict(), "min_word_units": 5})
        assert model.word_floor == 5
        assert all(len(w) >= 5 for w in model.speak_words("seven nine"))
    finally:
        model.config = default


@pytest.mark.parametrize("floor", [-1, "3", 2.5, True])
def test_a_bad_word_floor_is_refused_by_name(interleaved, floor):
    model, _ = interleaved
    raw = {**model.config.to_dict(), "min_word_units": floor}
    with pytest.raises(ValueError, match="min_word_units"):
        TokenLMConfig.from_dict(raw)


def test_interleaving_needs_aligned_clips(phrases, interleaved):
    root, _, _, _ = phrases  # `interleaved` saved the unit-to-speech folder this names
    config = {  # the manifest before `tokens align`: no word timings
        "model": {"approach": "tokens", "units": "voice", "interleave_words": True},
        "data": {"manifest": "speak.jsonl"}, "train": {"output": "unaligned", "steps": 1}}
    (root / "unaligned.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="tokens align"):
        train(load_config(root / "unaligned.json"))
    # timings for other words than the text's (a manifest edited by hand): a data error too
    row = json.loads((root / "speak.aligned.jsonl").read_text().splitlines()[0])
    row["words"] = [["hello", 0.0, 0.5]]
    (root / "edited.jsonl").write_text(json.dumps(row) + "\n")
    config["data"] = {"manifest": "edited.jsonl"}
    (root / "edited.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="do not match the text"):
        train(load_config(root / "edited.json"))


def test_align_keeps_clips_it_cannot_align_and_names_them(phrases):
    root, _, _, _ = phrases
    (root / "broken.wav").write_bytes(b"not a wav file at all")
    rows = [{"audio": "0.wav", "text": "two seven"},
            {"audio": "broken.wav", "text": "two nine"},
            {"audio": "two.wav", "text": ""}]
    (root / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    exe = str(Path(sys.executable).parent / "speechllm")
    done = subprocess.run([exe, "tokens", "align", str(root / "mixed.jsonl"), "--asr",
                           "whisper-tiny.en", "-o", str(root / "mixed.out.jsonl")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "aligned 1 of 3 clips" in done.stdout
    assert "broken.wav" in done.stderr and "two.wav" in done.stderr
    written = [json.loads(x) for x in (root / "mixed.out.jsonl").read_text().splitlines()]
    assert [r["audio"] for r in written] == ["0.wav", "broken.wav", "two.wav"]  # none lost
    assert [("words" in r) for r in written] == [True, False, False]


def test_align_resumes_keeping_earlier_timings_unless_asked_to_redo(phrases):
    root, _, _, _ = phrases
    rows = [json.loads(x) for x in (root / "speak.jsonl").read_text().splitlines()][:2]
    (root / "resume.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # an earlier run aligned the first clip (timings marked so they can be recognised)
    marked = [[w, 0.0, 0.0] for w in rows[0]["text"].split()]
    (root / "resume.aligned.jsonl").write_text(json.dumps({**rows[0], "words": marked}) + "\n")
    exe = str(Path(sys.executable).parent / "speechllm")

    def align(*extra: str) -> list[dict]:
        done = subprocess.run([exe, "tokens", "align", str(root / "resume.jsonl"), "--asr",
                               "whisper-tiny.en", *extra],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        assert "aligned 2 of 2 clips" in done.stdout
        return [json.loads(x) for x in (root / "resume.aligned.jsonl").read_text().splitlines()]

    first, second = align()
    assert first["words"] == marked  # kept, not aligned again
    assert second["words"][-1][2] > 0.5 and second["text"] == rows[1]["text"]  # the new clip
    first, _ = align("--redo")
    assert first["words"] != marked and first["words"][-1][2] > 0.5


def test_an_interrupted_align_keeps_what_it_finished(phrases, monkeypatch):
    from typer.testing import CliRunner

    import speechllm.tokens.align
    import speechllm.tokens.align_manifest
    from speechllm.cli import app

    root, _, _, _ = phrases
    rows = [json.loads(x) for x in (root / "speak.jsonl").read_text().splitlines()][:3]
    (root / "cut.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    real = speechllm.tokens.align.align_words
    calls: list[str] = []

    def stopped_on_the_third(asr, audio, text):  # Ctrl-C while the third clip aligns
        calls.append(text)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(asr, audio, text)

    monkeypatch.setattr(speechllm.tokens.align_manifest, "SAVE_EVERY", 1)
    for module in (speechllm.tokens.align, speechllm.tokens.align_manifest):
        monkeypatch.setattr(module, "align_words", stopped_on_the_third)
    args = ["tokens", "align", str(root / "cut.jsonl"), "--asr", "whisper-tiny.en",
            "--pack", "0"]  # clip by clip, so the third clip's alignment can be cut
    CliRunner().invoke(app, args)
    assert len(calls) == 3 and not (root / "cut.aligned.jsonl").exists()
    calls.clear()
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "aligned 3 of 3 clips (2 kept from before)" in done.output
    assert calls == [rows[2]["text"]]  # only the clip the interrupted run had not finished
    written = [json.loads(x) for x in (root / "cut.aligned.jsonl").read_text().splitlines()]
    assert [len(r["words"]) for r in written] == [2, 2, 2]
    assert not list(root.glob(".cut.aligned.jsonl.partial"))
