from speechllm.text_norm import normalize, spell_number, wer


def test_numerals_and_words_count_as_equal():
    assert normalize("Eight.") == normalize("8") == "eight"
    assert normalize("Call me at 42!") == "call me at forty two"
    assert spell_number(305) == "three hundred five"


def test_corpus_wer_counts_errors_per_reference_word():
    assert wer(["turn on the light", "nine"], ["Turn on the light.", "9"]) == 0
    assert wer(["turn on the light"], ["turn off the light"]) == 0.25
    assert wer(["one two"], [""]) == 1.0
