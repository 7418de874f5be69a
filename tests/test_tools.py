"""Tool calling from Python: schemas from typed functions, checking a model's calls, running
them safely, and the embedded LLM calling tools (constrained and free) through the cascade
and the command line."""

from __future__ import annotations

import json
import time
from enum import Enum
from typing import Literal

import pytest

from speechllm.cascade.pipeline import DEFAULT_SYSTEM
from speechllm.llm.base import GenerationOptions, ToolSet, fold_results, stream_tools
from speechllm.speechlm import Message, Request
from speechllm.toolbox import Toolbox, converse, tool_of
from speechllm.tools import (
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallError,
    ToolError,
    UseTool,
    calls_in_text,
    check_call,
    tool_choice_of,
)

from .conftest import ROOT, say
from .test_cli import run


class Room(Enum):
    KITCHEN = "kitchen"
    HALL = "hall"


def set_lights(room: Room, level: int, colour: str | None = None,
               tags: list[str] | None = None) -> dict:
    """Dim or brighten the lights in a room.

    Args:
        room: which room.
        level: brightness in percent, 0 to 100.
        colour: a colour name; the current one if left out.
    """
    return {"room": room, "level": level}


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
    """The current weather in a city."""
    return {"city": city, "temperature": 31 if city.lower().startswith("lisb") else 12,
            "unit": unit, "sky": "sunny"}


def set_timer(minutes: float, label: str = "timer") -> dict:
    """Start a countdown timer.

    Args:
        minutes: how long the timer runs.
    """
    return {"minutes": minutes, "label": label, "ends_at": "12:30"}


def test_schema_from_a_typed_function():
    tool = tool_of(set_lights)
    assert tool.name == "set_lights" and tool.description == "Dim or brighten the lights in a room."
    props = tool.parameters["properties"]
    assert props["room"] == {"type": "string", "enum": ["kitchen", "hall"],
                             "description": "which room."}
    assert props["level"]["type"] == "integer" and "percent" in props["level"]["description"]
    assert props["colour"]["type"] == "string"
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert tool.parameters["required"] == ["room", "level"]

    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(ToolError, match="annotate"):
        tool_of(untyped)


def test_model_slips_are_repaired_or_refused():
    tools = (tool_of(set_lights),)
    fixed = check_call("set_lights", '{"room": "Kitchen", "level": "40", "extra": 1}', tools)
    assert fixed.args() == {"room": "kitchen", "level": 40, "extra": 1}
    with pytest.raises(ToolCallError, match="not a tool"):
        check_call("launch_rocket", "{}", tools)
    with pytest.raises(ToolCallError, match="level"):
        check_call("set_lights", '{"room": "hall"}', tools)  # required field missing
    with pytest.raises(ToolCallError, match="room"):
        check_call("set_lights", '{"room": "garage", "level": 3}', tools)
    with pytest.raises(ToolCallError, match="not JSON"):
        check_call("set_lights", '{"room": "hall", level: 3', tools)
    assert calls_in_text("The capital is Paris.") == []
    found = calls_in_text('<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>\n'
                          '{"temperature": 3}')  # a result the model imagined is dropped
    assert found == [("f", {"a": 1})]


def test_bad_tool_definitions_and_choices_are_named():
    with pytest.raises(ToolError, match="name"):
        Tool("has space")
    with pytest.raises(ToolError, match="type object"):
        Tool.of({"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}})
    with pytest.raises(ToolError, match="invalid parameters"):
        Tool("f", "", {"type": "object", "properties": {"x": {"type": 5}}})
    tools = (tool_of(get_weather),)
    assert tool_choice_of({"type": "function", "function": {"name": "get_weather"}},
                          tools) == UseTool("get_weather")
    with pytest.raises(ToolError, match="not among"):
        tool_choice_of({"type": "function", "name": "nope"}, tools)
    with pytest.raises(ValueError, match="required"):
        Request(text="hi", tool_choice="required")


def test_toolbox_returns_errors_and_timeouts_to_the_model():
    def slow(seconds: float) -> str:
        """Sleeps."""
        time.sleep(seconds)
        return "woke"

    def broken(x: int) -> int:
        """Fails."""
        raise RuntimeError("sensor offline")

    def huge() -> str:
        """A flood."""
        return "y" * 100_000

    box = Toolbox([slow, broken, huge], timeout=0.5)
    start = time.monotonic()
    late = box.run(ToolCall("c1", "slow", '{"seconds": 30}'))
    assert time.monotonic() - start < 5 and not late.ok
    assert "did not return within 0.5 s" in json.loads(late.output)["error"]
    failed = box.run(ToolCall("c2", "broken", '{"x": 1}'))
    assert not failed.ok and "sensor offline" in json.loads(failed.output)["error"]
    unknown = box.run(ToolCall("c3", "nope", "{}"))
    assert not unknown.ok and "no tool" in json.loads(unknown.output)["error"]
    big = box.run(ToolCall("c4", "huge", "{}"))
    assert big.ok and len(big.output) < 5_000 and "100000 characters" in big.output
    assert box.run(ToolCall("c5", "slow", '{"seconds": 0}')).output == "woke"


def test_toolbox_from_a_module_file():
    box = Toolbox.from_module(str(ROOT / "examples" / "tools.py"))
    assert {t.name for t in box.tools} == {"get_weather", "set_timer", "get_time"}
    with pytest.raises(ToolError, match="cannot import"):
        Toolbox.from_module("no_such_module_here")


WEATHER, TIMER = tool_of(get_weather), tool_of(set_timer)
ASK = [Message("system", DEFAULT_SYSTEM)]  # the cascade's own system prompt


@pytest.mark.parametrize("constrained", [True, False])
def test_embedded_llm_calls_the_right_tool(chat_llm, constrained):
    tools = ToolSet((WEATHER, TIMER), "auto", constrained)
    out = list(stream_tools(chat_llm, [*ASK, Message("user", "Set a timer for ten minutes.")],
                            GenerationOptions(max_tokens=64), tools))
    call = out[-1]
    assert isinstance(call, ToolCall) and call.name == "set_timer"
    assert call.args()["minutes"] == 10
    pieces = [x for x in out if isinstance(x, ToolCallDelta)]
    if constrained:  # arguments stream as they are written, and add up to the call
        assert len(pieces) > 3 and json.loads("".join(p.arguments for p in pieces)) == \
            call.args()
    else:  # free writing is checked whole before anything goes out
        assert pieces == []
    text = list(stream_tools(chat_llm, [*ASK, Message("user", "What is the capital of France?")],
                             GenerationOptions(max_tokens=32), tools))
    assert all(isinstance(x, str) for x in text) and "Paris" in "".join(text)


def test_tool_choice_none_answers_as_without_tools(chat_llm):
    messages = [*ASK, Message("user", "What is the capital of France? One sentence.")]
    options = GenerationOptions(max_tokens=32)
    plain = "".join(chat_llm.stream_chat(messages, options))
    none = list(stream_tools(chat_llm, messages, options, ToolSet((WEATHER,), "none")))
    assert "".join(none) == plain  # the same prompt, token for token


def test_results_are_folded_in_for_a_model_that_would_ask_again():
    call = ToolCall("call_1", "get_weather", '{"city": "Lisbon"}')
    folded = fold_results([Message("system", "S"), Message("user", "Weather in Lisbon?"),
                           Message("assistant", "", tool_calls=(call,)),
                           Message("tool", '{"temperature": 31}', tool_call_id="call_1")])
    assert [m.role for m in folded] == ["system", "user"]
    assert 'get_weather({"city": "Lisbon"}): {"temperature": 31}' in folded[-1].content


def test_spoken_question_to_tool_and_spoken_answer_in_python(cascade, voice, asr):
    box = Toolbox([get_weather, set_timer])
    seen = []
    question = say(voice, "What's the weather in Lisbon today?")
    answer = converse(cascade, Request(audio=question, tools=box.tools), box,
                      on_result=seen.append)
    assert [r.call.name for r in seen] == ["get_weather"] and seen[0].ok
    assert "31" in answer.text and answer.audio is not None
    assert [m.role for m in answer.history] == ["user", "assistant", "tool", "assistant"]
    heard = asr.transcribe(answer.audio).text.lower()
    assert "31" in heard or "thirty" in heard


def test_cli_chat_calls_functions_from_a_module(tmp_path, voice):
    from speechllm.audio import save

    question = tmp_path / "timer.wav"
    save(say(voice, "Set a timer for five minutes for the eggs."), question)
    p = run("chat", str(question), "--tools", str(ROOT / "examples" / "tools.py"), "--json")
    assert p.returncode == 0, p.stderr
    record = json.loads(p.stdout.splitlines()[-1])
    assert [t["name"] for t in record["tools"]] == ["set_timer"]
    assert record["tools"][0]["arguments"]["minutes"] == 5 and record["tools"][0]["ok"]
    assert "5" in record["answer"] or "five" in record["answer"].lower()
    bad = run("chat", str(question), "--tools", "no_such_tools_module")
    assert bad.returncode == 2 and "cannot import" in bad.stderr



def test_earlier_turns_calls_are_left_out_of_the_prompt():
    from speechllm.llm.base import settled

    call = ToolCall("call_1", "set_timer", '{"minutes": 5}')
    history = [Message("system", "S"), Message("user", "Timer for five minutes."),
               Message("assistant", "", tool_calls=(call,)),
               Message("tool", '{"ok": true}', tool_call_id="call_1"),
               Message("assistant", "Your timer is set."),
               Message("user", "What is the capital of France?")]
    assert [(m.role, m.content) for m in settled(history)] == [
        ("system", "S"), ("user", "Timer for five minutes."),
        ("assistant", "Your timer is set."), ("user", "What is the capital of France?")]
    current = [*history, Message("assistant", "", tool_calls=(call,))]
    assert settled(current)[-1].tool_calls == (call,)  # this turn's calls stay


def test_constrained_calls_keep_integers_within_their_bounds(chat_llm):
    alarm = Tool("set_alarm", "Set an alarm (24-hour clock).", {
        "type": "object", "required": ["hour"], "properties": {
            "hour": {"type": "integer", "minimum": 0, "maximum": 23},
            "minute": {"type": "integer", "minimum": 0, "maximum": 59}}})
    for asked in ("Set an alarm for 27 o'clock and 75 minutes.", "Alarm at 99:99."):
        out = list(stream_tools(chat_llm, [*ASK, Message("user", asked)],
                                GenerationOptions(max_tokens=48),
                                ToolSet((alarm,), UseTool("set_alarm"))))
        args = out[-1].args()  # checked against the schema, so in range, or it would raise
        assert 0 <= args["hour"] <= 23 and 0 <= args.get("minute", 0) <= 59


def test_a_guided_call_leaves_the_model_as_it_found_it(chat_llm):
    """Guided decoding feeds the model by hand; the next answer, reusing its cache, must be
    the one it gave before the call."""
    messages = [*ASK, Message("user", "What is the capital of France? One sentence.")]
    options = GenerationOptions(max_tokens=24)
    before = "".join(chat_llm.stream_chat(messages, options))
    out = list(stream_tools(chat_llm, [*ASK, Message("user", "Weather in Oslo tomorrow?")],
                            options, ToolSet((WEATHER, TIMER), "auto")))
    assert isinstance(out[-1], ToolCall) and out[-1].name == "get_weather"
    assert "".join(chat_llm.stream_chat(messages, options)) == before


def test_a_schema_guided_decoding_cannot_follow_is_decoded_freely_and_checked(chat_llm,
                                                                                caplog):
    code = Tool("enter_code", "Enter a door code.", {
        "type": "object", "required": ["code"], "properties": {
            "code": {"type": "string", "pattern": "^(?!0000)[0-9]{4}$"}}})  # look-ahead
    with caplog.at_level("WARNING", logger="speechllm.llm"):
        out = list(stream_tools(chat_llm, [*ASK, Message("user", "Enter the code 4711.")],
                                GenerationOptions(max_tokens=48),
                                ToolSet((code,), UseTool("enter_code"))))
    assert "decoded freely" in caplog.text
    assert isinstance(out[-1], ToolCall) and out[-1].args() == {"code": "4711"}


def test_speculative_guided_decoding_writes_the_calls_token_by_token_decoding_writes(
        chat_llm, monkeypatch):
    """Guessed tokens (forced text, the user's words) ride along in a batch; the calls must
    be the ones decoding one token at a time gives, in fewer model evaluations."""
    from dataclasses import replace

    from speechllm.eval.tool_catalog import CATALOG

    ctx = chat_llm._llm._ctx
    decode, evaluations = ctx.decode, [0]

    def counted(batch):
        evaluations[0] += 1
        return decode(batch)

    monkeypatch.setattr(ctx, "decode", counted)
    asked = ("Send a message to Emma saying I left the door open.",
             "Set a timer for ten minutes for the eggs.", "Add olive oil to my shopping list.",
             "Wake me up at 11.30 a.m.",  # as the recogniser writes it: numbers guessed
             "Set the heating to 72 degrees Fahrenheit.")  # and an enum's choice

    def calls() -> tuple[list[dict], int]:
        evaluations[0], out = 0, []
        for question in asked:
            *_, call = stream_tools(chat_llm, [*ASK, Message("user", question)],
                                    GenerationOptions(max_tokens=64), ToolSet(CATALOG))
            assert isinstance(call, ToolCall)
            out.append({"name": call.name, **call.args()})
        return out, evaluations[0]

    monkeypatch.setattr(chat_llm, "config", replace(chat_llm.config, guess_tokens=0))
    one_by_one, slow = calls()
    monkeypatch.undo()
    monkeypatch.setattr(ctx, "decode", counted)
    speculative, fast = calls()
    assert speculative == one_by_one
    assert speculative[0]["name"] == "send_message" and \
        "left the door open" in speculative[0]["message"]
    assert 11 in speculative[3].values()  # "11.30": the number the user said
    assert fast < 0.8 * slow, (fast, slow)


def test_a_guessed_call_opening_leaves_text_replies_as_they_were(chat_llm, monkeypatch):
    """Where the user names a tool ("alarm", "thermostat") the call's opening is guessed
    with the prompt; a reply the model writes in words must begin with the same words, and a call
    the same call, as without that guess."""
    from speechllm.eval.tool_catalog import CATALOG

    asked = ("What is an alarm clock?", "What does a thermostat do?", "Call Maria.")

    def replies() -> list[object]:
        out: list[object] = []
        for question in asked:
            events = list(stream_tools(chat_llm, [*ASK, Message("user", question)],
                                       GenerationOptions(max_tokens=24), ToolSet(CATALOG)))
            calls = [(e.name, e.args()) for e in events if isinstance(e, ToolCall)]
            # the first clause's words: later ones may flip on a near tie, since the prompt's
            # last tokens were computed in another batch (the last bits of the arithmetic)
            text = " ".join("".join(e for e in events if isinstance(e, str)).split()[:4])
            out.append(calls or text)
        return out

    guessed = replies()
    monkeypatch.setattr(chat_llm, "_call_or_text", lambda tools, heard: None)
    assert guessed == replies()
    assert isinstance(guessed[0], str) and "alarm" in guessed[0].lower()
    assert guessed[2] == [("call_contact", {"contact": "Maria"})]


def test_a_guess_leaves_sampling_unbiased():
    """With temperature, a guess is kept with the model's probability and otherwise the
    token is drawn from the rest: every token keeps its softmax probability."""
    import numpy as np

    from speechllm.llm.speculative import choose as _choose

    logits = np.array([2.0, 1.0, 0.5, -1.0, -np.inf])
    p = np.exp(logits - 2.0)
    p /= p.sum()
    rng, n = np.random.default_rng(0), 20_000
    options = GenerationOptions(temperature=1.0, top_p=1.0)
    for guess in (0, 1, 3, 4):
        counts = np.bincount([_choose(logits.copy(), guess, options, rng) for _ in range(n)],
                             minlength=5) / n
        assert counts[4] == 0  # a token the grammar forbids is never taken, guessed or not
        assert np.all(np.abs(counts - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12), (guess, counts)
    nucleus = GenerationOptions(temperature=1.0, top_p=0.5)  # token 0 alone (p = 0.57)
    assert {_choose(logits.copy(), 1, nucleus, rng) for _ in range(200)} == {0}


def test_guess_tokens_out_of_range_is_refused():
    from speechllm.llm.llama_cpp import LlamaConfig

    for bad in (-1, 33):
        with pytest.raises(ValueError, match="guess_tokens"):
            LlamaConfig(guess_tokens=bad)


def test_numbers_are_guessed_in_the_order_the_user_said_them():
    from speechllm.llm.speculative import next_number

    said = "Wake me up at 11.30 a.m."
    assert next_number('{"name": "set_alarm", "arguments": {"hour": ', said) == "11"
    assert next_number('{"name": "set_alarm", "arguments": {"hour": 11, "minute": ', said) == "30"
    assert next_number('{"hour": 11, "minute": 30, "second": ', said) == ""


def test_a_values_choice_is_guessed_from_the_words_the_user_said(chat_llm):
    """At an enum's value the guess is the user's word that is one of its choices, written
    as the schema writes it; a word that only begins a choice ("to" for "todo") is not one.
    At a free value's first letters, the rest of the user's word that begins with them."""
    import llguidance

    from speechllm.eval.tool_catalog import CATALOG
    from speechllm.llm.guided import Grammar, call_grammar, tokenizer_of
    from speechllm.llm.speculative import continuation, said_choice

    llm = chat_llm._llm
    grammar = llguidance.LLMatcher.grammar_from_lark(call_grammar(CATALOG))

    def choice(written: str, said: str) -> bytes:
        rules = Grammar(llguidance.LLMatcher(tokenizer_of(llm), grammar))
        draft = list(llm.tokenize(written.encode(), add_bos=False, special=False))
        return said_choice(llm, rules, draft, b' "', said)

    unit = '{"name": "set_thermostat", "arguments": {"temperature": 72, "unit":'
    assert choice(unit, "Set the heating to 72 degrees Fahrenheit.") == b"fahrenheit"
    assert choice(unit, "Set the heating to 72 degrees.") == b""
    shopping = '{"name": "add_to_list", "arguments": {"list_name":'
    assert choice(shopping, "Add olive oil to my shopping list") == b"shopping"
    assert choice(shopping, "Add a walk to my list") == b""  # "to" only begins "todo"
    assert continuation('{"minutes": 12, "label": "la',
                        "Set a timer for 12 minutes for the laundry.") == "undry."


def test_a_free_values_guess_is_a_name_the_user_said_not_yet_written():
    from speechllm.llm.speculative import said_name

    said = "Send a message to Emma saying I left the door open."
    assert said_name('{"contact": "', said) == "Emma"
    assert said_name('{"contact": "Emma", "message": "', said) == ""  # not "I", not "Send"
    assert said_name('{"city": "', "Is it cold in Oslo? Tell me.") == "Oslo"


def test_the_call_name_guessed_is_the_tool_whose_name_the_user_said():
    from speechllm.eval.tool_catalog import CATALOG
    from speechllm.llm.guided import likely_tool

    assert likely_tool(CATALOG, "Set a timer for 12 minutes.") == "set_timer"
    assert likely_tool(CATALOG, "Set the lights in the kitchen to 10%.") == "set_lights"
    assert likely_tool(CATALOG, "Call Maria.") == "call_contact"
    assert likely_tool(CATALOG, "Wake me up at 11.30 a.m.") == ""  # no name's word said
    # "set" begins four names: the description says which one heats
    assert likely_tool(CATALOG, "Set the heating to 21 degrees.") == "set_thermostat"
