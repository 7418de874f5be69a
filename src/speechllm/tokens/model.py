"""`TokenSpeechLM`: an LLM whose vocabulary also holds audio units, read and written like text.

The vocabulary grows by k unit tokens `<|u0|>`..`<|u{k-1}|>` and two boundary markers
`<|audio_start|>` / `<|audio_end|>`. Their embeddings live in a small table of their own (the
`adapter`), initialised at the mean of the LLM's embeddings plus noise of its spread, and their
output logits use the same rows (tied, as the base LLMs here are), so the huge base table stays
frozen and LoRA + the new rows are all that trains — with the latent trainer, unchanged
(`speechllm train` with `"model": {"approach": "tokens", ...}`).

Sequences:
- understanding (audio -> text): `Audio: <|audio_start|> units <|audio_end|>\\nInstruction:
  ...\\nAnswer:` then the answer text;
- generation (text -> audio): `Say: text\\n<|audio_start|>` then units, ended by
  `<|audio_end|>`; or, with `interleave_words`, word by word: `Say: text\\n` then for each
  word ` word<|audio_start|>` and that word's units, ended by `<|audio_end|>` (the words'
  timings in the training clips come from `speechllm tokens align`);
- continuation (audio -> audio): `<|audio_start|> units` then more units.

Decoding is constrained to the right family: text steps never emit unit tokens or markers,
audio steps emit only units or `<|audio_end|>`.

Long because the model reads and writes the same sequences: building them, the grown
vocabulary's embeddings and logits, the training loss and constrained decoding share the
token layout, and splitting them apart would spread one format over several files. Batched
word-by-word speaking is in `speaking`, the unit cache in `unit_cache`.

Saved in the same shape as the latent model: `config.json`, `adapter.safetensors` (the new
rows), `lora/`, plus the unit tokenizer (or unit-to-speech decoder) in `units/`.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from speechllm.audio import Audio
from speechllm.errors import MissingDependency, ModelError
from speechllm.folders import opening, read_config, write_config
from speechllm.lm.causal import keep_layers, load_causal_lm
from speechllm.lm.lora import LORA_MODULES, lora_modules
from speechllm.lm.packing import IGNORE, pack, packed_hidden
from speechllm.speechlm import AnswerOptions, Event, Message, Request, Response
from speechllm.threaded_stream import threaded_stream
from speechllm.timing import Stopwatch
from speechllm.tokens.align import WordTiming, unit_spans
from speechllm.tokens.base import dedup
from speechllm.tokens.semantic import KMeansUnits
from speechllm.tokens.speaking import speak_rows
from speechllm.tokens.unit_cache import encode_files, tokenizer_key
from speechllm.tools import ToolError

try:
    import torch
    from torch import Tensor, nn
except ImportError as exc:  # this module is PyTorch through and through
    raise MissingDependency(f"torch is not installed ({exc}); install it with: "
                            "pip install 'speechllm[latent]'") from exc

DEFAULT_INSTRUCTION = "Answer the question in the audio."
# The trainer's instruction for a manifest task `{"speak": true}`: say the item's text as its
# units (the generation direction) instead of answering a question about the audio.
SPEAK_TASK = "<|speak|>"


WORD_FLOOR_SECONDS = 0.12  # the default shortest spoken word (see min_word_units)


def word_floor_units(rate: float) -> int:
    """WORD_FLOOR_SECONDS in units at `rate` units/s, at least one."""
    return max(1, round(WORD_FLOOR_SECONDS * rate))


@dataclass(frozen=True)
class TokenLMConfig:
    units: str  # a unit tokenizer folder, or a unit-to-speech folder (which can also speak)
    llm: str = "gemma-3-270m"  # embedded GGUF name, .gguf path or HF directory
    lora_rank: int = 8
    lora_modules: tuple[str, ...] = LORA_MODULES  # the LLM's linear layers that get LoRA
    dedup: bool = True  # read deduplicated units (runs collapsed), as unit LMs usually do
    # speak word by word (each word's text, then its units): the model need not learn which
    # units belong to which word, the alignment it otherwise gets wrong on small data
    interleave_words: bool = False
    # speaking: no word ends before this many units; None: WORD_FLOOR_SECONDS at the units'
    # rate (3 at 25 units/s, 6 at 50; the training clips have no word under 80 ms). Without
    # it a small model's commonest error is an empty last word: it gives the phrase's closing
    # silence to the word before, then ends the last at once ("eight seven one" heard as
    # "8-7"). A decoding setting: it changes no weights.
    min_word_units: int | None = None
    # Training on both directions at once: each family's targets averaged on their own, the
    # two means summed. Otherwise every target token weighs the same, a speaking example's
    # ~60 unit targets outweigh the 2-token answers of understanding (about 3% of a mixed
    # batch's loss), and understanding barely learns until speaking has (docs/tokens.md).
    balance_families: bool = False
    # Training batches packed end to end, each sequence attending to itself only, instead of
    # padded to the longest: the same loss, a recipe step 0.85-0.9x the padded one's time
    # (speechllm.lm.packing). A training setting: it changes no weights.
    packed_batches: bool = True
    # Keep only some of the LLM's decoder layers: the first N, or a list of layer numbers
    # (None: all). The cut is part of the model: saved in its config and made again on
    # loading, before LoRA is applied (speechllm.lm.causal.keep_layers).
    llm_layers: int | tuple[int, ...] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "model") -> TokenLMConfig:
        data = {k: v for k, v in data.items() if k != "approach"}
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ValueError(f"{where}.{key}: unknown field; known: {', '.join(sorted(known))}")
        if not isinstance(data.get("units"), str):
            raise ValueError(f"{where}.units: required, a unit tokenizer folder")
        if not (Path(data["units"]) / "config.json").is_file():
            raise ValueError(f"{where}.units: {data['units']} is not a tokenizer folder")
        layers = data.get("llm_layers")
        if isinstance(layers, list) and layers and all(
                isinstance(i, int) and not isinstance(i, bool) for i in layers):
            data = {**data, "llm_layers": tuple(layers)}
        elif layers is not None and (not isinstance(layers, int) or isinstance(layers, bool)
                                     or layers < 1):
            raise ValueError(f"{where}.llm_layers: a number of layers >= 1, a list of layer "
                             f"numbers, or null for all; not {layers!r}")
        floor = data.get("min_word_units")
        if floor is not None and (not isinstance(floor, int) or isinstance(floor, bool)
                                  or floor < 0):
            raise ValueError(f"{where}.min_word_units: a whole number of units >= 0 (or null "
                             f"for {WORD_FLOOR_SECONDS * 1000:.0f} ms), not {floor!r}")
        return cls(**{**data, "lora_modules": lora_modules(data.get("lora_modules",
                                                                    LORA_MODULES), where)})

    def to_dict(self) -> dict[str, Any]:
        return {"approach": "tokens", **asdict(self)}

    @property
    def tunable_encoder(self) -> bool:
        return False  # the units are fixed: fitted k-means over a frozen Whisper


@dataclass(frozen=True)
class SpeakTarget:
    """What a speak task says: the text and, when the clip is aligned, each word's span."""

    text: str
    words: tuple[WordTiming, ...] = ()

    @classmethod
    def from_item(cls, item: Any) -> SpeakTarget:
        raw = item.fields.get("words")
        if raw is None:
            return cls(str(item.text))
        try:
            words = tuple((str(w), float(a), float(b)) for w, a, b in raw)
        except (TypeError, ValueError):
            raise ValueError(f"{item.audio}: \"words\" must be [[word, start, end], ...] "
                             "(speechllm tokens align writes them)") from None
        if [w for w, _, _ in words] != str(item.text).split():
            raise ValueError(f"{item.audio}: \"words\" do not match the text {item.text!r}")
        return cls(str(item.text), words)


def _load_units(folder: str | os.PathLike[str]) -> tuple[KMeansUnits, Any]:
    """(unit tokenizer, unit-to-speech decoder or None) from either kind of folder."""
    kind = json.loads((Path(folder) / "config.json").read_text()).get("kind")
    if kind == "unit2speech":
        from speechllm.tokens.unit2speech import UnitToSpeech
        voice = UnitToSpeech.load(folder)
        return voice.units, voice
    return KMeansUnits.load(folder), None


class UnitEncoder:
    """The tokenizer as the model's encoder: 'states' are padded unit ids (not deduplicated:
    speaking needs the durations; reading collapses them itself)."""

    def __init__(self, units: KMeansUnits) -> None:
        self.units = units
        self.dim = 1

    def encode(self, audios: Sequence[Audio]) -> tuple[np.ndarray, np.ndarray]:
        return padded(self.units.encode_many(audios))


def padded(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Unit sequences as one zero-padded (B, T) array, and their lengths (at least 1)."""
    lengths = np.array([max(1, len(s)) for s in seqs], np.int64)
    out = np.zeros((len(seqs), int(lengths.max())), np.int64)
    for b, s in enumerate(seqs):
        out[b, : len(s)] = s
    return out, lengths


class NewTokens(nn.Module):
    """Embedding rows for the added tokens (units, then start and end markers)."""

    def __init__(self, count: int, base: Tensor) -> None:
        super().__init__()
        mean, std = base.mean(0), base.std(0)
        self.weight = nn.Parameter(mean + std * torch.randn(count, base.shape[1]) * 0.5)

    def forward(self, ids: Tensor) -> Tensor:
        return nn.functional.embedding(ids, self.weight)


class TokenSpeechLM:
    """A `SpeechLM` over an LLM whose vocabulary grew by audio units (see the module).

    Reading: `respond`/`stream` answer a spoken request in text. Speaking: `say` (text ->
    audio), `speak_units` / `speak_words` (one phrase's units, whole or word by word, the
    latter when the model was trained with `interleave_words`), their `_batch` forms for many
    phrases at once, `continue_units` (audio -> more audio) and `teacher_forced_units` (the
    model's unit at each position of a known clip). Training: the `Trainable` methods."""

    def __init__(self, config: TokenLMConfig, llm: tuple[Any, Any] | None = None) -> None:
        self.config = config
        self.units, self.voice = _load_units(config.units)
        self.encoder = UnitEncoder(self.units)
        self.lm, self.tok = llm or load_causal_lm(config.llm)
        if config.llm_layers is not None:
            keep_layers(self.lm, config.llm_layers)
        table = self.lm.get_input_embeddings().weight
        self.base_vocab = int(table.shape[0])
        self.k = self.units.config.k
        self.start_id, self.end_id = self.base_vocab + self.k, self.base_vocab + self.k + 1
        with torch.no_grad():
            self.adapter = NewTokens(self.k + 2, table.detach().float())
        self.tuned_encoder = False
        self.eos_ids = {i for i in (self.tok.eos_token_id,
                                    self.tok.convert_tokens_to_ids("<end_of_turn>"),
                                    self.tok.convert_tokens_to_ids("<|im_end|>"))
                        if isinstance(i, int) and i >= 0 and i != self.tok.unk_token_id}
        self._lock = threading.Lock()
        self.options = AnswerOptions()  # set from an approach config's options

    # -- embedding and logits over the grown vocabulary ---------------------------------------

    def _causal(self) -> Any:
        return self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm

    def embed_ids(self, ids: Sequence[int] | Tensor) -> Tensor:
        table = self.lm.get_input_embeddings()
        ids = torch.as_tensor(ids, dtype=torch.long, device=table.weight.device)
        new = ids >= self.base_vocab
        out = table(ids.clamp(max=self.base_vocab - 1))
        if bool(new.any()):
            out = out.clone()
            out[new] = self.adapter(ids[new] - self.base_vocab).to(out.dtype)
        return out

    def text_logits(self, hidden: Tensor) -> Tensor:
        """Scores over the base vocabulary (a text step)."""
        causal = self._causal()
        base = causal.lm_head(hidden).float()
        if getattr(causal.config, "final_logit_softcapping", None):
            cap = causal.config.final_logit_softcapping
            base = torch.tanh(base / cap) * cap
        return base

    def audio_logits(self, hidden: Tensor) -> Tensor:
        """Scores over the audio family: the k units, then `<|audio_end|>` (column k)."""
        rows = torch.cat([self.adapter.weight[: self.k], self.adapter.weight[self.k + 1:]])
        return hidden.float() @ rows.float().T

    def unit_ids(self, units: Sequence[int]) -> list[int]:
        return [self.base_vocab + int(u) for u in units]

    def understanding_ids(self, units: Sequence[int], instruction: str) -> list[int]:
        if self.config.dedup:
            units = dedup(np.asarray(units, dtype=np.int64))[0].tolist()
        before = self.tok("Audio: ", add_special_tokens=True)["input_ids"]
        after = self.tok(f"\nInstruction: {instruction}\nAnswer:",
                         add_special_tokens=False)["input_ids"]
        return [*before, self.start_id, *self.unit_ids(units), self.end_id, *after]

    def say_ids(self, text: str) -> list[int]:
        """The generation prompt `Say: text\\n` (whole phrase or word by word alike)."""
        ids: list[int] = self.tok(f"Say: {text}\n", add_special_tokens=True)["input_ids"]
        return ids

    def generation_ids(self, text: str) -> list[int]:
        return [*self.say_ids(text), self.start_id]

    def word_ids(self, word: str) -> list[int]:
        """A word's text tokens, then the start marker: what comes before its units."""
        return [*self.tok(" " + word, add_special_tokens=False)["input_ids"], self.start_id]

    def speaking_rows(self, target: SpeakTarget, units: Sequence[int]
                      ) -> tuple[list[int], list[int]]:
        """(ids, labels) of a generation example; only units and end markers are targets."""
        if not self.config.interleave_words:
            prompt = self.generation_ids(target.text)
            answer = [*self.unit_ids(units), self.end_id]
            return prompt + answer, [IGNORE] * len(prompt) + answer
        if not target.words:
            raise ValueError(f"interleave_words needs word timings for {target.text!r}; add "
                             "them with `speechllm tokens align`")
        ids = self.say_ids(target.text)
        labels = [IGNORE] * len(ids)
        for (word, _, _), (a, b) in zip(target.words, unit_spans(
                len(units), self.units.info.rates[0], target.words), strict=True):
            given = self.word_ids(word)
            spoken = [*self.unit_ids(units[a:b]), self.end_id]
            ids += given + spoken
            labels += [IGNORE] * len(given) + spoken
        return ids, labels

    def answer_ids(self, text: str) -> list[int]:
        ids: list[int] = self.tok(" " + text.strip(), add_special_tokens=False)["input_ids"]
        return [*ids, self.tok.eos_token_id]

    # -- the trainer's interface (speechllm.train.Trainable) ------------------------------------

    def trainable_encoder(self) -> nn.Module | None:
        return None

    def encode_clips(self, paths: Sequence[str | os.PathLike[str]]) -> tuple[Tensor, Tensor]:
        return self.encode_files(paths)

    def cache_key(self) -> str:
        """What the units of a clip depend on (the tokenizer's settings and centroids): the
        trainer keeps encoded clips on disk under this key, so reruns skip the encoder."""
        return tokenizer_key(self.units)

    def encode_audio(self, audios: Sequence[Audio]) -> tuple[Tensor, Tensor]:
        units, lengths = self.encoder.encode(audios)
        return torch.from_numpy(units), torch.from_numpy(lengths)

    def encode_files(self, paths: Sequence[str | os.PathLike[str]]) -> tuple[Tensor, Tensor]:
        """`encode_audio` of audio files, through the units cache that fitting the units and
        training a decoder on them fill (speechllm.tokens.unit_cache): clips they encoded
        are not encoded again."""
        units, lengths = padded(encode_files(self.units, paths))
        return torch.from_numpy(units), torch.from_numpy(lengths)

    def training_rows(self, states: Tensor, lengths: Tensor, instructions: Sequence[str],
                      answers: Sequence[str | SpeakTarget]) -> tuple[list[list[int]],
                                                                     list[list[int]]]:
        """A batch's token rows and their labels (IGNORE where not a target), unpadded."""
        rows, targets = [], []
        for b, instruction in enumerate(instructions):
            units = states[b, : int(lengths[b])].tolist()
            if instruction == SPEAK_TASK:  # generation: the text, then the clip's own units
                spoken = answers[b]
                row, marked = self.speaking_rows(
                    spoken if isinstance(spoken, SpeakTarget) else SpeakTarget(spoken), units)
            else:
                prompt = self.understanding_ids(units, instruction)
                answer = self.answer_ids(str(answers[b]))
                row, marked = prompt + answer, [IGNORE] * len(prompt) + answer
            rows.append(row)
            targets.append(marked)
        return rows, targets

    def loss(self, states: Tensor, lengths: Tensor, instructions: Sequence[str],
             answers: Sequence[str | SpeakTarget]) -> Tensor:
        rows, targets = self.training_rows(states, lengths, instructions, answers)
        # built on the CPU (many small writes), moved once to where the LM is
        device = self.adapter.weight.device
        if self.config.packed_batches:
            packed = pack(rows, targets)
            ids, labels = packed.ids.to(device), packed.labels.to(device)
            hidden = packed_hidden(self._causal(), self.embed_ids(ids), packed.positions)
        else:
            width = max(len(r) for r in rows)
            ids = torch.zeros(len(rows), width, dtype=torch.long)
            mask = torch.zeros(len(rows), width, dtype=torch.long)
            labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
            for b, r in enumerate(rows):
                ids[b, : len(r)], mask[b, : len(r)] = torch.tensor(r), 1
                labels[b, : len(r)] = torch.tensor(targets[b])
            ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
            hidden = self._causal().model(inputs_embeds=self.embed_ids(ids),
                                          attention_mask=mask, use_cache=False
                                          ).last_hidden_state
        shifted = labels[:, 1:]
        picked, target = hidden[:, :-1][shifted != IGNORE], shifted[shifted != IGNORE]
        # Each target is scored within its own family, as decoding is constrained to it: a
        # unit against the other units (not the 262k text rows, most of a speaking step's
        # cost otherwise), a text token against the base vocabulary.
        audio = target >= self.base_vocab
        sums = []  # (summed cross-entropy, targets) per family present
        if bool((~audio).any()):
            sums.append((nn.functional.cross_entropy(
                self.text_logits(picked[~audio]), target[~audio], reduction="sum"),
                int((~audio).sum())))
        if bool(audio.any()):
            column = target[audio] - self.base_vocab
            column = torch.where(column > self.k, column - 1, column)  # end marker -> k
            sums.append((nn.functional.cross_entropy(
                self.audio_logits(picked[audio]), column, reduction="sum"), int(audio.sum())))
        if not sums:
            return picked.new_zeros((), dtype=torch.float32)
        if self.config.balance_families:
            return torch.stack([total / count for total, count in sums]).sum()
        return torch.stack([total for total, _ in sums]).sum() / sum(c for _, c in sums)

    # -- decoding ------------------------------------------------------------------------------

    def generate(self, prompt: list[int], family: str, max_tokens: int,
                 on_token: Callable[[list[int]], None] | None = None,
                 min_tokens: int = 0) -> list[int]:
        """Greedy continuation of `prompt`, constrained to `family` ("text" or "audio").
        The stop (end of text, or the audio end marker) is not allowed before `min_tokens`
        tokens; `max_tokens` still ends the output."""
        if family == "text":
            score = self.text_logits
            stops = self.eos_ids
        else:
            score = self.audio_logits
            stops = {self.k}  # the end marker's column in audio_logits
        out: list[int] = []
        embeds = self.embed_ids(prompt)[None]
        causal = self._causal()
        cache = None
        for _ in range(max_tokens):
            result = causal.model(inputs_embeds=embeds, cache=cache, use_cache=True)
            cache = result.cache
            scores = score(result.last_hidden_state[0, -1])
            if len(out) < min_tokens:
                scores[list(stops)] = -torch.inf
            token = int(scores.argmax())
            if token in stops:
                break
            if family == "audio":
                token += self.base_vocab
            out.append(token)
            if on_token is not None:
                on_token(out)
            embeds = self.embed_ids([token])[None]
        return out

    def _generate(self, request: Request, on_text: Callable[[str], None] | None = None
                  ) -> Response:
        if request.uses_tools:  # its LM was never taught to call; a cascade does
            raise ToolError("a token speech model cannot call tools; serve a cascade for "
                            "tool calling")
        if request.audio is None:
            raise ValueError("a token speech model needs audio in the request")
        clock = Stopwatch()
        instruction = request.system or self.options.instruction or DEFAULT_INSTRUCTION
        with self._lock, torch.inference_mode():
            with clock.span("tokenize"):
                units, lengths = self.encoder.encode([request.audio])
            start = clock.elapsed()
            first: list[float] = []

            def on_token(ids: list[int]) -> None:
                if not first:
                    first.append(clock.elapsed())
                    clock.mark_text()
                if on_text is not None:
                    on_text(self.tok.decode(ids, skip_special_tokens=True))

            ids = self.generate(self.understanding_ids(units[0, : lengths[0]].tolist(),
                                                       instruction),
                                "text", request.token_limit(self.options.max_tokens), on_token)
            clock.add("prefill", start, first[0] if first else clock.elapsed())
            clock.add("decode", first[0] if first else clock.elapsed(), clock.elapsed())
        text = self.tok.decode(ids, skip_special_tokens=True).strip()
        if on_text is not None:  # raises when the stream was closed: a cancelled answer
            on_text(text)        # is not spoken
        audio = None
        if request.want_audio and self.voice is not None and text:
            # the model says its own answer as units; unit-to-speech makes them audible
            with clock.span("speak"):
                spoken = self.speak_units(text)
            with clock.span("tts"):
                audio = self.voice.decode((np.asarray(spoken, np.int64),))
            clock.mark_audio()
        history = (*request.history, Message("user", "<audio>"), Message("assistant", text))
        return Response(text, None, audio, clock.freeze(), history)

    def say(self, text: str, max_units: int | None = None) -> Audio:
        """Text -> units (this model) -> waveform (its unit-to-speech decoder)."""
        if self.voice is None:
            raise ModelError("this token model has no unit-to-speech decoder; train it with "
                             "`units` set to a unit-to-speech folder to let it speak")
        if not text.strip():
            raise ValueError("nothing to say: the text is empty")
        units = self.speak_units(text, max_units or self.max_units(text))
        if not units:
            raise ModelError("the model ended the audio before any unit")
        return self.voice.decode((np.asarray(units, np.int64),))

    @property
    def word_floor(self) -> int:
        """Fewest units a spoken word may have: the config's setting, else the default floor
        at these units' rate."""
        if self.config.min_word_units is not None:
            return self.config.min_word_units
        return word_floor_units(self.units.info.rates[0])

    def max_units(self, text: str) -> int:
        # a generous cap (2 s plus 0.32 s a character: 50 + 8 per character at 25 units/s)
        # so a model that never ends its audio stops; in seconds, so faster units get as long
        return round((2.0 + 0.32 * len(text)) * self.units.info.rates[0])

    def speak_units(self, text: str, max_units: int | None = None) -> list[int]:
        """Generation direction: unit ids (0..k-1) for `text`."""
        if self.config.interleave_words:
            return [u for word in self.speak_words(text, max_units) for u in word]
        cap = max_units or self.max_units(text)
        with self._lock, torch.inference_mode():
            ids = self.generate(self.generation_ids(text), "audio", cap,
                                min_tokens=self.word_floor * len(text.split()))
        return [i - self.base_vocab for i in ids]

    def speak_words(self, text: str, max_units: int | None = None,
                    min_word_units: int | None = None) -> list[list[int]]:
        """Word by word (a model trained with `interleave_words`): each word's text is
        given, the model writes that word's units until it ends them, and its own units stay
        in the context for the next word. One list of units (0..k-1) per word."""
        return self.speak_words_batch([text], max_units, min_word_units)[0]

    def speak_words_batch(self, texts: Sequence[str], max_units: int | None = None,
                          min_word_units: int | None = None, batch_size: int = 8
                          ) -> list[list[list[int]]]:
        """`speak_words` of many texts, `batch_size` at a time: each says the same as alone,
        and a batch of 8 speaks several times as many phrases a second on a CPU (see
        speechllm.tokens.speaking). `max_units` caps each phrase (default: its own cap)."""
        if not self.config.interleave_words:
            raise ModelError("this token model speaks whole phrases; it was not trained with "
                             "interleave_words")
        floor = self.word_floor if min_word_units is None else min_word_units
        budgets = [max_units or self.max_units(text) for text in texts]
        with self._lock, torch.inference_mode():
            return speak_rows(self, texts, budgets, floor, batch_size)

    def speak_units_batch(self, texts: Sequence[str], batch_size: int = 8) -> list[list[int]]:
        """`speak_units` of many texts: batched when the model speaks word by word, one by
        one otherwise."""
        if not self.config.interleave_words:
            return [self.speak_units(text) for text in texts]
        return [[u for word in words for u in word]
                for words in self.speak_words_batch(texts, batch_size=batch_size)]

    def teacher_forced_units(self, target: SpeakTarget, units: Sequence[int]) -> list[int]:
        """The unit this model would write at each position of `units` (a clip of `target`)
        given the clip's true units before it: the LM's kind of near misses, aligned one to
        one with the clip's frames, for training a unit-to-speech decoder that renders them
        well (as Tacotron 2's vocoder trains on ground-truth-aligned predictions)."""
        ids, labels = self.speaking_rows(target, units)
        with self._lock, torch.inference_mode():
            hidden = self._causal().model(
                inputs_embeds=self.embed_ids(ids)[None]).last_hidden_state[0]
            marked = torch.tensor(labels[1:], device=hidden.device)
            is_unit = (marked >= self.base_vocab) & (marked < self.start_id)
            scores = self.audio_logits(hidden[:-1][is_unit])[:, : self.k]
        out = scores.argmax(dim=1).tolist()
        if len(out) != len(units):  # every unit is a target exactly once
            raise ModelError(f"{len(out)} predictions for {len(units)} units")
        return out

    def continue_units(self, units: Sequence[int], max_units: int = 200) -> list[int]:
        """Continuation direction: more units after `units`."""
        with self._lock, torch.inference_mode():
            ids = self.generate([self.start_id, *self.unit_ids(units)], "audio", max_units)
        return [i - self.base_vocab for i in ids]

    def respond(self, request: Request) -> Response:
        return self._generate(request)

    def stream(self, request: Request) -> AsyncIterator[Event]:
        return threaded_stream(self._generate, request)

    # -- saving and loading --------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        from safetensors.torch import save_file

        out = write_config(directory, {**self.config.to_dict(), "units": "units"})
        units_dir = out / "units"
        if Path(self.config.units).resolve() != units_dir.resolve():
            shutil.rmtree(units_dir, ignore_errors=True)
            shutil.copytree(self.config.units, units_dir)
        save_file({"weight": self.adapter.weight.detach().contiguous()},
                  str(out / "adapter.safetensors"))
        if self.config.lora_rank and hasattr(self.lm, "peft_config"):
            self.lm.save_pretrained(str(out / "lora"))
        return out

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str]) -> TokenSpeechLM:
        from safetensors.torch import load_file

        with opening(directory, "token model") as folder:
            raw = read_config(folder)
            raw["units"] = str(folder / raw.get("units", "units"))
            config = TokenLMConfig.from_dict(raw)
            weight = load_file(str(folder / "adapter.safetensors"))["weight"]
        model = cls(config)
        if (folder / "lora").is_dir():
            import peft

            model.lm = peft.PeftModel.from_pretrained(model.lm, str(folder / "lora"))
        if weight.shape != model.adapter.weight.shape:
            raise ModelError(f"{folder}: {weight.shape[0]} new token rows, expected "
                             f"{model.adapter.weight.shape[0]}")
        with torch.no_grad():
            model.adapter.weight.copy_(weight)
        model.lm.eval()
        return model
