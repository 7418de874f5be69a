"""`LatentSpeechLM`: speech encoder -> adapter -> spliced into the LLM's input embeddings.

The prompt holds an `<audio>` placeholder; its token embeddings are replaced by the adapter's
output. Any instruction works ("Transcribe the audio.", "Is the number even?"): it is the
`Request.system` text, placed in the user turn after the audio. Saved in the Hugging Face
shape: `config.json` + `adapter.safetensors` (+ `lora/` when the LLM was LoRA-tuned, +
`encoder.safetensors` when a transformers Whisper encoder was fine-tuned).
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechllm._optional import require
from speechllm.audio import Audio
from speechllm.encoders import SpeechEncoder, is_hf_whisper, make_encoder
from speechllm.errors import ModelError
from speechllm.folders import opening, read_config, write_config
from speechllm.latent.adapters import AdapterConfig, make_adapter
from speechllm.lm.causal import load_causal_lm
from speechllm.lm.lora import LORA_MODULES, lora_modules
from speechllm.speechlm import AnswerOptions, Event, Message, Request, Response
from speechllm.threaded_stream import OnText, threaded_stream
from speechllm.timing import Stopwatch
from speechllm.tools import ToolError

torch = require("torch", "latent")
if TYPE_CHECKING:
    from torch import Tensor, nn

from speechllm.lm.packing import pack_embeddings, packed_hidden  # noqa: E402  (needs torch)

PLACEHOLDER = "<audio>"
DEFAULT_INSTRUCTION = "Answer the question in the audio."


@dataclass(frozen=True)
class LatentConfig:
    # embedded name or CTranslate2 folder (frozen), or a Hugging Face Whisper folder (trainable)
    encoder: str = "whisper-base"
    window_seconds: float = 30.0  # encoder window; the model is trained and run with it
    llm: str = "qwen2.5-0.5b-instruct"  # embedded GGUF name, .gguf path or HF directory
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    system: str = "You listen to audio and follow the instruction."
    lora_rank: int = 0  # > 0: the LLM carries LoRA weights (saved in lora/)
    lora_modules: tuple[str, ...] = LORA_MODULES  # the LLM's linear layers that get LoRA
    # training rows packed end to end instead of padded to the batch's longest
    # (speechllm.lm.packing; the same loss, less compute where rows differ in length)
    packed_batches: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "model") -> LatentConfig:
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ValueError(f"{where}.{key}: unknown field; known: {', '.join(sorted(known))}")
        adapter = data.get("adapter", {})
        if not isinstance(adapter, dict):
            raise ValueError(f"{where}.adapter: expected an object")
        known_adapter = {f.name for f in fields(AdapterConfig)}
        for key in adapter:
            if key not in known_adapter:
                raise ValueError(f"{where}.adapter.{key}: unknown field; known: "
                                 f"{', '.join(sorted(known_adapter))}")
        modules = lora_modules(data.get("lora_modules", LORA_MODULES), where)
        return cls(**{**data, "adapter": AdapterConfig(**adapter), "lora_modules": modules})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def tunable_encoder(self) -> bool:
        return is_hf_whisper(self.encoder)


def _prompt_text(tok: Any, system: str, instruction: str) -> str:
    user = f"{PLACEHOLDER}\n{instruction}"
    if getattr(tok, "chat_template", None):
        text: str = tok.apply_chat_template(
            [{"role": "system", "content": system}, {"role": "user", "content": user}],
            tokenize=False, add_generation_prompt=True)
        return text
    return f"{system}\n\nUser: {user}\nAssistant:"  # base models (no chat template)


class LatentSpeechLM:
    """A `SpeechLM` whose LLM reads adapted encoder states in place of `<audio>`."""

    def __init__(self, config: LatentConfig, encoder: SpeechEncoder | None = None,
                 llm: tuple[Any, Any] | None = None, engine: str = "torch") -> None:
        if engine not in ("torch", "llama.cpp"):
            raise ValueError(f"engine must be 'torch' or 'llama.cpp', got {engine!r}")
        self.config = config
        self.engine = engine
        self._fast: Any = None  # the llama.cpp decoder, loaded on first use
        self.encoder = encoder or make_encoder(config.encoder, config.window_seconds)
        window = float(getattr(self.encoder, "window_seconds", config.window_seconds))
        if window != config.window_seconds:  # a transformers encoder's window is its config's
            self.config = config = replace(config, window_seconds=window)
        self.tuned_encoder = False  # set by the trainer when the encoder's weights train
        self.lm, self.tok = llm or load_causal_lm(config.llm)
        dims = replace(config.adapter, enc_dim=self.encoder.dim,
                       llm_dim=self.lm.get_input_embeddings().embedding_dim)
        if dims != config.adapter:
            self.config = config = replace(config, adapter=dims)
        self.adapter = make_adapter(config.adapter)
        self.end_ids = {i for i in (self.tok.eos_token_id,
                                    self.tok.convert_tokens_to_ids("<|im_end|>"),
                                    self.tok.convert_tokens_to_ids("<end_of_turn>"))
                        if isinstance(i, int) and i >= 0 and i != self.tok.unk_token_id}
        self._lock = threading.Lock()  # one generation at a time per model
        self.options = AnswerOptions()  # set from an approach config's options

    # -- building inputs ------------------------------------------------------------------

    def prompt_ids(self, instruction: str) -> tuple[list[int], list[int]]:
        """Token ids before and after the audio placeholder."""
        before, _, after = _prompt_text(self.tok, self.config.system, instruction).partition(
            PLACEHOLDER)
        return (self.tok(before, add_special_tokens=True)["input_ids"],
                self.tok(after, add_special_tokens=False)["input_ids"])

    def encode_audio(self, audios: Sequence[Audio]) -> tuple[Tensor, Tensor]:
        """Encoder states as a float tensor (B, T, D) and their lengths (B,)."""
        states, lengths = self.encoder.encode(audios)
        if isinstance(states, np.ndarray):
            states = torch.from_numpy(states)
        return states, torch.as_tensor(lengths)

    # -- the trainer's interface (speechllm.train.Trainable) ---------------------------------

    def trainable_encoder(self) -> nn.Module | None:
        return self.encoder.module if self.encoder.trainable else None

    def encode_clips(self, paths: Sequence[str | os.PathLike[str]]) -> tuple[Tensor, Tensor]:
        from speechllm.audio import load
        return self.encode_audio([load(p) for p in paths])

    def cache_key(self) -> str | None:
        return None  # encoder states are too big to keep on disk

    def embed_rows(self, states: Tensor, lengths: Tensor, instructions: Sequence[str],
                   answers: Sequence[list[int]] | None = None
                   ) -> tuple[list[Tensor], list[list[int]]]:
        """Each row's spliced input embeddings (length, D), unpadded, and its labels (-100
        but at the answer's tokens, when `answers` are given)."""
        table = self.lm.get_input_embeddings()
        device = table.weight.device  # the encoder's states come from the CPU
        audio, audio_len = self.adapter(states.to(device), lengths.to(device))
        rows, labels = [], []
        for b, instruction in enumerate(instructions):
            before, after = self.prompt_ids(instruction)
            target = list(answers[b]) if answers is not None else []
            ids_after = after + target
            parts = [table(torch.tensor(before, device=device)), audio[b, : int(audio_len[b])],
                     table(torch.tensor(ids_after, dtype=torch.long, device=device))]
            rows.append(torch.cat(parts))
            prompt_len = len(before) + int(audio_len[b]) + len(after)
            labels.append([-100] * prompt_len + target)
        return rows, labels

    def embed(self, states: Tensor, lengths: Tensor, instructions: Sequence[str],
              answers: Sequence[list[int]] | None = None) -> dict[str, Tensor]:
        """Spliced input embeddings, right-padded: inputs_embeds (B, L, D), attention_mask
        (B, L) and, with `answers` (token ids), labels (B, L) that score only the answers."""
        rows, labels = self.embed_rows(states, lengths, instructions, answers)
        device = rows[0].device
        width = max(r.shape[0] for r in rows)
        dim = rows[0].shape[1]
        embeds = torch.zeros(len(rows), width, dim, dtype=rows[0].dtype, device=device)
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        label_t = torch.full((len(rows), width), -100, dtype=torch.long, device=device)
        for b, r in enumerate(rows):
            embeds[b, : r.shape[0]] = r
            mask[b, : r.shape[0]] = 1
            label_t[b, : len(labels[b])] = torch.tensor(labels[b], device=device)
        out = {"inputs_embeds": embeds, "attention_mask": mask}
        if answers is not None:
            out["labels"] = label_t
        return out

    def answer_ids(self, text: str) -> list[int]:
        """Target ids for training: the answer, then the turn's end token."""
        ids: list[int] = self.tok(text, add_special_tokens=False)["input_ids"]
        end = self.tok.convert_tokens_to_ids("<|im_end|>")
        if not isinstance(end, int) or end < 0 or end == self.tok.unk_token_id:
            end = self.tok.eos_token_id
        return [*ids, end]

    def loss(self, states: Tensor, lengths: Tensor, instructions: Sequence[str],
             answers: Sequence[str]) -> Tensor:
        """Mean cross-entropy over answer tokens. Logits are computed only where a label is,
        sparing the vocabulary projection for the prompt and audio positions."""
        targets = [self.answer_ids(a) for a in answers]
        causal = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm
        if self.config.packed_batches:
            rows, marks = self.embed_rows(states, lengths, instructions, targets)
            embeds, packed = pack_embeddings(rows, marks)
            hidden = packed_hidden(causal, embeds, packed.positions)
            labels = packed.labels.to(embeds.device)[:, 1:]
        else:
            batch = self.embed(states, lengths, instructions, targets)
            hidden = causal.model(inputs_embeds=batch["inputs_embeds"],
                                  attention_mask=batch["attention_mask"],
                                  use_cache=False).last_hidden_state
            labels = batch["labels"][:, 1:]
        picked = hidden[:, :-1][labels != -100]
        logits = causal.lm_head(picked).float()
        if getattr(causal.config, "final_logit_softcapping", None):
            cap = causal.config.final_logit_softcapping
            logits = torch.tanh(logits / cap) * cap
        return torch.nn.functional.cross_entropy(logits, labels[labels != -100])

    # -- the SpeechLM interface -----------------------------------------------------------

    def _generate(self, request: Request, on_text: OnText | None = None) -> Response:
        if request.uses_tools:  # its LM was never taught to call; a cascade does
            raise ToolError("a latent speech model cannot call tools; serve a cascade for "
                            "tool calling")
        if request.audio is None:
            raise ValueError("a latent speech model needs audio in the request")
        clock = Stopwatch()
        instruction = request.system or self.options.instruction or DEFAULT_INSTRUCTION
        with self._lock, torch.inference_mode():
            with clock.span("encode"):
                states, lengths = self.encode_audio([request.audio])
            with clock.span("adapt"):
                batch = self.embed(states, lengths, [instruction])
            start = clock.elapsed()
            limit = request.token_limit(self.options.max_tokens)
            if self.engine == "llama.cpp":
                ids = self._generate_llama_cpp(instruction, batch, limit, clock, start, on_text)
            else:
                ids = self._generate_torch(batch, limit, clock, start, on_text)
            first = clock.freeze().ttft or start
            clock.add("decode", first, clock.elapsed())
        text = self.tok.decode(ids, skip_special_tokens=True).strip()
        history = (*request.history, Message("user", PLACEHOLDER),
                   Message("assistant", text))
        return Response(text, None, None, clock.freeze(), history)

    def _llama_cpp(self) -> Any:
        from speechllm.latent.llama_cpp_decode import LlamaCppLatentDecoder

        if self._fast is None:
            self._fast = LlamaCppLatentDecoder(self.config.llm)
        return self._fast

    def _llama_cpp_inputs(self, instruction: str, batch: dict[str, Tensor]
                          ) -> tuple[list[int], np.ndarray, list[int]]:
        """The prompt's ids before the audio, the audio's embeddings, the ids after it."""
        before, after = self.prompt_ids(instruction)
        embeds = batch["inputs_embeds"][0, len(before): batch["inputs_embeds"].shape[1]
                                        - len(after)].float().numpy()
        return before, embeds, after

    def logprobs(self, audio: Audio, instruction: str, continuation: Sequence[int] = ()
                 ) -> np.ndarray:
        """Log-probabilities over the vocabulary, shape (len(continuation) + 1, vocab): of
        the token after the prompt, then after each token of `continuation` (teacher-forced),
        from this model's engine. Scores candidate answers; checks one engine against the
        other."""
        with self._lock, torch.inference_mode():
            states, lengths = self.encode_audio([audio])
            batch = self.embed(states, lengths, [instruction])
            if self.engine == "llama.cpp":
                before, embeds, after = self._llama_cpp_inputs(instruction, batch)
                scores: np.ndarray = self._llama_cpp().logprobs(before, embeds, after,
                                                                continuation)
                return scores
            table = self.lm.get_input_embeddings()
            tail = table(torch.tensor([list(continuation)], dtype=torch.long))
            embeds = torch.cat([batch["inputs_embeds"], tail.to(batch["inputs_embeds"].dtype)],
                               dim=1)
            logits = self.lm(inputs_embeds=embeds,
                             logits_to_keep=len(continuation) + 1).logits[0].double()
            out: np.ndarray = torch.log_softmax(logits, dim=-1).numpy()
            return out

    def _generate_llama_cpp(self, instruction: str, batch: dict[str, Tensor], max_tokens: int,
                            clock: Stopwatch, start: float, on_text: OnText | None
                            ) -> list[int]:
        before, embeds, after = self._llama_cpp_inputs(instruction, batch)
        marked: list[bool] = []

        def on_token(ids: list[int]) -> None:
            if not marked:
                clock.add("prefill", start, clock.elapsed())
                clock.mark_text()
                marked.append(True)
            if on_text is not None:
                on_text(self.tok.decode(ids, skip_special_tokens=True))

        ids: list[int] = self._llama_cpp().generate(before, embeds, after, max_tokens,
                                                    self.end_ids, on_token)
        return ids

    def _generate_torch(self, batch: dict[str, Tensor], max_tokens: int, clock: Stopwatch,
                        start: float, on_text: OnText | None) -> list[int]:
        past: Any = None
        ids: list[int] = []
        embeds, mask = batch["inputs_embeds"], batch["attention_mask"]
        for step in range(max_tokens):
            out = self.lm(inputs_embeds=embeds, attention_mask=mask, cache=past,
                          use_cache=True, logits_to_keep=1)
            past = out.cache
            token = int(out.logits[0, -1].argmax())
            if step == 0:
                clock.add("prefill", start, clock.elapsed())
                clock.mark_text()
            if token in self.end_ids:
                break
            ids.append(token)
            if on_text is not None:
                on_text(self.tok.decode(ids, skip_special_tokens=True))
            embeds = self.lm.get_input_embeddings()(torch.tensor([[token]]))
            mask = torch.cat([mask, torch.ones(1, 1, dtype=mask.dtype)], dim=1)
        return ids

    def respond(self, request: Request) -> Response:
        return self._generate(request)

    def stream(self, request: Request) -> AsyncIterator[Event]:
        return threaded_stream(self._generate, request)

    # -- saving and loading ---------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        st = require("safetensors.torch", "latent")
        out = write_config(directory, self.config.to_dict())
        state = {k: v.detach().contiguous() for k, v in self.adapter.state_dict().items()}
        st.save_file(state, str(out / "adapter.safetensors"))
        module = getattr(self.encoder, "module", None)
        if self.tuned_encoder and module is not None:
            st.save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()},
                         str(out / "encoder.safetensors"))
        if self.config.lora_rank and hasattr(self.lm, "save_pretrained") and hasattr(
                self.lm, "peft_config"):
            self.lm.save_pretrained(str(out / "lora"))
        return out

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str],
                        engine: str = "torch") -> LatentSpeechLM:
        """Load a saved model; `engine="llama.cpp"` decodes with the quantized GGUF."""
        st = require("safetensors.torch", "latent")
        with opening(directory, "latent model") as folder:
            config = LatentConfig.from_dict(read_config(folder))
            weights = st.load_file(str(folder / "adapter.safetensors"))
        model = cls(config, engine=engine)
        if config.lora_rank:
            peft = require("peft", "latent")
            model.lm = peft.PeftModel.from_pretrained(model.lm, str(folder / "lora"))
        model.adapter.load_state_dict(weights)
        model.adapter.eval()
        tuned = folder / "encoder.safetensors"
        module = getattr(model.encoder, "module", None)
        if tuned.is_file():
            if module is None:
                raise ModelError(f"{folder}: has fine-tuned encoder weights but the encoder "
                                 f"{config.encoder!r} is not a Hugging Face Whisper folder")
            module.load_state_dict(st.load_file(str(tuned)))
            module.eval()
            model.tuned_encoder = True
        return model
