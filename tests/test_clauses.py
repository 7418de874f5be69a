from __future__ import annotations

from speechllm.cascade.clauses import ClauseSplitter, speakable


def feed_all(text: str, step: int = 3, min_chars: int = 24) -> list[str]:
    splitter = ClauseSplitter(min_chars)
    out = []
    for i in range(0, len(text), step):  # deltas cut at arbitrary places, like LLM tokens
        out += splitter.feed(text[i:i + step])
    return out + list(splitter.flush())


def test_sentences_are_released_as_soon_as_they_end():
    splitter = ClauseSplitter()
    assert list(splitter.feed("Paris is the capital.")) == []  # no space yet: may continue
    assert list(splitter.feed(" It is")) == ["Paris is the capital."]
    assert list(splitter.flush()) == ["It is"]


def test_decimals_and_short_comma_fragments_stay_whole():
    assert feed_all("Pi is about 3.14 today. Well, yes.") == ["Pi is about 3.14 today.",
                                                             "Well, yes."]


def test_long_clauses_cut_at_commas():
    text = "The Eiffel Tower, which was finished in 1889, stands in Paris. Visit it."
    assert feed_all(text, min_chars=20) == [
        "The Eiffel Tower, which was finished in 1889,", "stands in Paris.", "Visit it."]


def test_list_items_are_released_line_by_line():
    text = "Pack these:\n- sunscreen\n- a towel\n- water"
    assert feed_all(text) == ["Pack these:", "sunscreen", "a towel", "water"]


def test_markdown_is_not_read_aloud():
    assert speakable("**Bold** and `code`\n- item one\n1. first") == "Bold and code item one first"


def test_the_first_clause_can_be_cut_after_a_few_words_and_only_the_first():
    """TTS starts on the first four words instead of waiting for the first sentence; a
    sentence that ends sooner is still cut at its end, and later clauses are whole."""
    splitter = ClauseSplitter(24, first_words=4)
    out: list[str] = []
    for delta in ["The", " capital", " of", " France"]:  # the fourth word may go on
        out += splitter.feed(delta)
    assert out == []
    for delta in [" is", " Paris.", " It", " is", " a", " large", " old", " city.", " "]:
        out += splitter.feed(delta)
    assert out == ["The capital of France", "is Paris.", "It is a large old city."]
    short = ClauseSplitter(24, first_words=4)
    assert list(short.feed("Yes. The capital of France is Paris. ")) == [
        "Yes.", "The capital of France is Paris."]
