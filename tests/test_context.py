"""Context for contextual biasing, as users give it: the CLI's --context (a file or the text)
and a manifest's "context" field."""

from __future__ import annotations

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
