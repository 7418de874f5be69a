"""Write bench/texts/tools.jsonl: the spoken tool-call benchmark's requests, each with the call
it needs (or none), a dev/test split and the voice and noise it is spoken with.

    ./dev python bench/tools_requests.py            # rewrites bench/texts/tools.jsonl

Templates are phrased as people ask a voice assistant; values are drawn with a fixed seed, so
the file is reproducible. Every tool has 16 requests and there are 40 that need no tool (general
questions, chit-chat, and near misses that mention a tool's topic: "what is a thermostat?").
Every third request (by position within its tool) is dev, the rest test.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "texts" / "tools.jsonl"
# (voice, snr) conditions, assigned round-robin over the file
CONDITIONS = [("piper", None), ("espeak:en-us", None), ("espeak:en-gb+f3", None),
              ("piper", 10), ("espeak:en-us", 10), ("piper", 0)]

CITIES = ["Lisbon", "Paris", "London", "Tokyo", "Berlin", "Madrid", "Chicago", "Toronto",
          "Sydney", "Rome", "Dublin", "Boston", "Oslo", "Vienna", "Seattle", "Denver"]
PEOPLE = ["Anna", "Mark", "Sarah", "David", "Emma", "James", "Laura", "Peter", "Maria",
          "Tom", "Julia", "Chris", "Sophie", "Daniel", "Kate", "Michael"]
ROOMS = ["kitchen", "living room", "bedroom", "bathroom", "office"]
MUSIC = ["jazz", "the Beatles", "classical music", "Taylor Swift", "rock music",
         "Bohemian Rhapsody", "Miles Davis", "some relaxing piano", "Coldplay", "hip hop",
         "Abbey Road", "Beethoven", "country music", "Daft Punk", "the blues", "ABBA"]
MESSAGES = ["I am running late", "dinner is ready", "see you at eight", "call me back",
            "I will be home soon", "happy birthday", "the meeting moved to Monday",
            "bring the keys", "thanks for the flowers", "I landed safely",
            "pick up some bread", "the train is delayed", "good luck today",
            "I left the door open", "we need more milk", "let us meet at noon"]
ITEMS = ["milk", "eggs", "bread", "coffee", "apples", "rice", "cheese", "tomatoes",
         "butter", "bananas", "olive oil", "chicken", "yogurt", "pasta", "onions", "honey"]
TASKS = ["call the dentist", "pay the rent", "water the plants", "book a haircut",
         "renew my passport", "clean the garage", "email the landlord", "buy a gift for Mum",
         "fix the bike", "return the library books", "wash the car", "cancel the gym",
         "file the taxes", "walk the dog", "back up the laptop", "plan the trip"]
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven",
                8: "eight", 9: "nine", 10: "ten", 11: "eleven", 12: "twelve", 15: "fifteen",
                20: "twenty", 25: "twenty-five", 30: "thirty", 40: "forty", 45: "forty-five",
                50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty", 90: "ninety",
                100: "a hundred"}
NO_TOOL = [
    "What is the capital of France?", "Who wrote Romeo and Juliet?",
    "How many legs does a spider have?", "Tell me a joke.", "How are you today?",
    "What is the largest planet in our solar system?", "Why is the sky blue?",
    "What does a thermostat do?", "Who invented the telephone?",
    "Can you explain what a currency exchange rate is?", "What is your name?",
    "Thank you, that is all for now.", "What is the boiling point of water?",
    "How do I make a cup of tea?", "What language do people speak in Brazil?",
    "Is a tomato a fruit or a vegetable?", "What is jazz music?",
    "How long does it take to boil an egg?", "What is the tallest mountain in the world?",
    "Good morning!", "What is the square root of eighty-one?",
    "Who painted the Mona Lisa?", "What do bees make?", "How many days are in a leap year?",
    "What is a good name for a cat?", "Which ocean is the biggest?",
    "What is the opposite of hot?", "Can you recommend a good book?",
    "What causes rain?", "How far is the moon from the earth?",
    "What is the chemical symbol for gold?", "Why do leaves change colour in autumn?",
    "How many minutes are in an hour?", "What is an alarm clock?",
    "What is the weather like on Mars?", "Who is the author of Harry Potter?",
    "What does a shopping list help with?", "Tell me something interesting.",
    "What is the fastest land animal?", "Goodbye, talk to you later.",
]


def weather(r: random.Random) -> tuple[str, dict[str, Any]]:
    city, tomorrow = r.choice(CITIES), r.random() < 0.4
    when = "tomorrow" if tomorrow else r.choice(["today", "right now", ""])
    text = r.choice([
        f"What's the weather like in {city} {when}?", f"Will it rain in {city} {when}?",
        f"How hot is it in {city} {when}?", f"Give me the forecast for {city} {when}.",
        f"Do I need an umbrella in {city} {when}?"])
    args: dict[str, Any] = {"city": city}
    if tomorrow:
        args["day"] = "tomorrow"
    return " ".join(text.split()).replace(" ?", "?").replace(" .", "."), args


def timer(r: random.Random) -> tuple[str, dict[str, Any]]:
    minutes = r.choice([1, 2, 3, 5, 10, 12, 15, 20, 25, 30, 40, 45])
    label = r.choice([None, None, "pasta", "eggs", "laundry", "tea", "the oven", "a nap"])
    spoken = NUMBER_WORDS.get(minutes, str(minutes))
    unit = "minute" if minutes == 1 else "minutes"
    if label:
        text = r.choice([f"Set a timer for {spoken} {unit} for the {label}.",
                         f"Start a {spoken} minute {label} timer.",
                         f"Remind me about the {label} in {spoken} {unit} with a timer."])
        return text.replace("the the", "the").replace("the a nap", "a nap"), {
            "minutes": minutes, "label": label.replace("the ", "")}
    return r.choice([f"Set a timer for {spoken} {unit}.", f"Start a {spoken} minute timer.",
                     f"Can you time {spoken} {unit} for me?",
                     f"Timer, {spoken} {unit}, please."]), {"minutes": minutes}


def alarm(r: random.Random) -> tuple[str, dict[str, Any]]:
    hour12, minute = r.choice([5, 6, 7, 8, 9, 10, 11]), r.choice([0, 0, 15, 30, 45])
    pm = r.random() < 0.3
    hour = hour12 + 12 if pm else hour12
    said = f"{NUMBER_WORDS[hour12]}" + ("" if minute == 0 else f" {NUMBER_WORDS[minute]}")
    half = "p.m." if pm else "a.m."
    text = r.choice([f"Wake me up at {said} {half}.", f"Set an alarm for {said} {half}.",
                     f"I need an alarm at {said} {half} tomorrow.",
                     f"Alarm for {said} {half}, please."])
    args: dict[str, Any] = {"hour": hour}
    if minute:
        args["minute"] = minute
    return text, args


def music(r: random.Random) -> tuple[str, dict[str, Any]]:
    query, shuffle = r.choice(MUSIC), r.random() < 0.25
    if shuffle:
        return f"Shuffle some {query}." if r.random() < 0.5 else \
            f"Play {query} on shuffle.", {"query": query, "shuffle": True}
    return r.choice([f"Play {query}.", f"Put on {query}, please.",
                     f"I want to listen to {query}."]), {"query": query}


def message(r: random.Random) -> tuple[str, dict[str, Any]]:
    who, what = r.choice(PEOPLE), r.choice(MESSAGES)
    return r.choice([f"Send a message to {who} saying {what}.",
                     f"Text {who} that {what}.", f"Tell {who} {what}, by text message."]), {
        "contact": who, "message": what}


def lights(r: random.Random) -> tuple[str, dict[str, Any]]:
    room, level = r.choice(ROOMS), r.choice([0, 10, 20, 25, 30, 50, 60, 70, 75, 80, 100])
    if level == 0:
        return f"Turn off the lights in the {room}.", {"room": room, "level": 0}
    if level == 100:
        return f"Turn the {room} lights all the way up.", {"room": room, "level": 100}
    words = NUMBER_WORDS.get(level, str(level))
    return r.choice([f"Dim the {room} lights to {words} percent.",
                     f"Set the lights in the {room} to {words} percent.",
                     f"{room.capitalize()} lights at {words} percent, please."]), {
        "room": room, "level": level}


def thermostat(r: random.Random) -> tuple[str, dict[str, Any]]:
    if r.random() < 0.3:
        t = r.choice([65, 68, 70, 72, 75])
        return r.choice([f"Set the heating to {t} degrees Fahrenheit.",
                         f"Make it {t} Fahrenheit in here."]), {
            "temperature": t, "unit": "fahrenheit"}
    t = r.choice([18, 19, 20, 21, 22, 23, 24])
    return r.choice([f"Set the thermostat to {t} degrees.",
                     f"Heat the house to {t} degrees Celsius.",
                     f"Change the temperature to {t} degrees."]), {"temperature": t}


def add_to_list(r: random.Random) -> tuple[str, dict[str, Any]]:
    if r.random() < 0.5:
        item = r.choice(ITEMS)
        return r.choice([f"Add {item} to my shopping list.", f"Put {item} on the shopping list.",
                         f"We are out of {item}, add it to the shopping list."]), {
            "list_name": "shopping", "item": item}
    task = r.choice(TASKS)
    return r.choice([f"Add {task} to my to-do list.", f"Put {task} on my to do list.",
                     f"Remind me to {task}, add it to my to-do list."]), {
        "list_name": "todo", "item": task}


CURRENCY_WORDS = {"USD": "dollars", "EUR": "euros", "GBP": "pounds", "JPY": "yen"}


def currency(r: random.Random) -> tuple[str, dict[str, Any]]:
    source, target = r.sample(list(CURRENCY_WORDS), 2)
    amount = r.choice([5, 10, 20, 25, 50, 100, 200, 500])
    a = NUMBER_WORDS.get(amount, str(amount))
    s, t = CURRENCY_WORDS[source], CURRENCY_WORDS[target]
    return r.choice([f"How much is {a} {s} in {t}?", f"Convert {a} {s} to {t}.",
                     f"What are {a} {s} worth in {t}?"]), {
        "amount": amount, "source": source, "target": target}


def call(r: random.Random) -> tuple[str, dict[str, Any]]:
    who = r.choice(PEOPLE)
    return r.choice([f"Call {who}.", f"Phone {who}, please.", f"Give {who} a ring.",
                     f"Can you call {who} for me?"]), {"contact": who}


MAKERS = {"get_weather": weather, "set_timer": timer, "set_alarm": alarm,
          "play_music": music, "send_message": message, "set_lights": lights,
          "set_thermostat": thermostat, "add_to_list": add_to_list,
          "convert_currency": currency, "call_contact": call}


def main() -> None:
    r = random.Random(45)
    rows: list[dict[str, Any]] = []
    for name, make in MAKERS.items():
        seen: set[str] = set()
        n = 0
        while n < 16:
            text, args = make(r)
            if text in seen:
                continue
            seen.add(text)
            rows.append({"text": text, "call": {"name": name, "arguments": args},
                         "split": "dev" if n % 3 == 0 else "test"})
            n += 1
    for n, text in enumerate(NO_TOOL):
        rows.append({"text": text, "call": None, "split": "dev" if n % 3 == 0 else "test"})
    for i, row in enumerate(rows):
        voice, snr = CONDITIONS[i % len(CONDITIONS)]
        row["voice_plan"], row["snr_plan"] = voice, "clean" if snr is None else snr
    OUT.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    print(f"wrote {OUT}: {len(rows)} requests, "
          f"{sum(r['split'] == 'dev' for r in rows)} dev")


if __name__ == "__main__":
    main()
