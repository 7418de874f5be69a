from speechllm.text_norm import normalize, spell_number, wer, word_errors


def test_numerals_and_words_count_as_equal():
    assert normalize("Eight.") == normalize("8") == "eight"
    assert normalize("Call me at 42!") == "call me at forty two"
    assert spell_number(305) == "three hundred five"


def test_corpus_wer_counts_errors_per_reference_word():
    assert wer(["turn on the light", "nine"], ["Turn on the light.", "9"]) == 0
    assert wer(["turn on the light"], ["turn off the light"]) == 0.25
    assert wer(["one two"], [""]) == 1.0


def test_digit_strings_can_be_read_digit_by_digit():
    # Whisper writes a spoken "eight seven one" as "871" or "8-7-1"
    assert word_errors("eight seven one", "871")[0] > 0  # by default: eight hundred seventy one
    assert word_errors("eight seven one", "871", digits=True) == (0, 3)
    assert word_errors("call four zero two", "Call 4-0-2.", digits=True) == (0, 4)
    assert wer(["nine six"], ["9, 5"], digits=True) == 0.5
