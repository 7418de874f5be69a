"""GGUF language models through llama-cpp-python: streamed chat and log-likelihood scoring."""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechllm import models
from speechllm._optional import require
from speechllm.errors import ModelError
from speechllm.llm.base import GenerationOptions
from speechllm.speechlm import Message


@dataclass(frozen=True)
class LlamaConfig:
    n_ctx: int = 4096  # context window in tokens
    n_threads: int = 0  # 0: one per core
    n_batch: int = 512
    # Reuse the KV cache of the longest prompt prefix shared with the previous call (system
    # prompt, earlier turns): faster turns, but greedy output may then differ in the last bits
    # from a cold start. False resets the cache each call for bit-reproducible runs.
    prefix_cache: bool = True


def _load(model: str | os.PathLike[str], role: str, config: LlamaConfig,
          logits_all: bool = False) -> tuple[Any, Path]:
    llama_cpp = require("llama_cpp", "llm")
    path = models.resolve(model, role)
    if not Path(path).is_file():
        raise ModelError(f"{path} is not a GGUF file")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelError(f"{path} is not a GGUF file (bad magic bytes)")
    # llama.cpp prints its own failure to stderr; keep the user's terminal to our one line.
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=config.n_ctx, n_batch=config.n_batch,
                n_threads=config.n_threads or (os.cpu_count() or 1), logits_all=logits_all,
                verbose=False,
            )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelError(f"cannot load GGUF model {path}: {exc}") from None
    return llm, Path(path)


class LlamaCppChat:
    """A chat model; `model` is an embedded name ("qwen2.5-0.5b-instruct") or any GGUF path.
    The prompt format comes from the chat template stored in the GGUF file."""

    def __init__(self, model: str | os.PathLike[str] = "qwen2.5-0.5b-instruct",
                 config: LlamaConfig | None = None) -> None:
        self.config = config or LlamaConfig()
        self._llm, path = _load(model, "chat", self.config)
        self.name = str(model) if str(model) in models.REGISTRY else path.stem
        self._lock = threading.Lock()  # a llama.cpp context serves one generation at a time

    def stream_chat(self, messages: Sequence[Message],
                    options: GenerationOptions | None = None) -> Iterator[str]:
        o = options or GenerationOptions()
        with self._lock:
            if not self.config.prefix_cache:
                self._llm.reset()
            chunks = self._llm.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                stream=True, max_tokens=o.max_tokens, temperature=o.temperature, top_p=o.top_p,
                stop=list(o.stop) or None, seed=o.seed,
            )
            for chunk in chunks:
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece


class LlamaCppScorer:
    """Log-likelihood of text under a GGUF LM (default: the embedded Gemma 3 270M base model).

    Keeps the logits of every position (`logits_all`), so memory grows with n_ctx x vocabulary:
    the default 256-token window costs about 270 MB for Gemma's 262k-token vocabulary.
    """

    def __init__(self, model: str | os.PathLike[str] = "gemma-3-270m",
                 config: LlamaConfig | None = None) -> None:
        cfg = config or LlamaConfig(n_ctx=256, n_batch=256)
        self._llm, path = _load(model, "scoring", cfg, logits_all=True)
        self.name = str(model) if str(model) in models.REGISTRY else path.stem
        self._n_ctx = cfg.n_ctx
        self._lock = threading.Lock()

    def _tokens(self, text: str, bos: bool) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False))

    def loglikelihood(self, text: str, context: str = "") -> float:
        """Sum of log P(token | everything before) over the tokens of `text`."""
        head = self._tokens(context, bos=True)
        body = self._tokens(text, bos=False)
        if not body:
            return 0.0
        tokens = head + body
        if len(tokens) > self._n_ctx:
            raise ValueError(f"{len(tokens)} tokens exceed the scorer's {self._n_ctx}-token window")
        with self._lock:
            self._llm.reset()
            self._llm.eval(tokens)
            logits = np.asarray(self._llm.scores[: len(tokens)], dtype=np.float64)
        # Row i predicts token i+1: score each body token from the row before it.
        rows = logits[len(head) - 1: len(tokens) - 1]
        peak = rows.max(axis=1, keepdims=True)
        logz = np.log(np.exp(rows - peak).sum(axis=1)) + peak[:, 0]
        picked = rows[np.arange(len(body)), body]
        return float((picked - logz).sum())


def llama_cpp_chat(model: str, base_url: str | None = None) -> LlamaCppChat:
    """The registry's factory: `model` an embedded GGUF name or a .gguf path."""
    if base_url:
        raise ValueError("the llama-cpp LLM backend runs in process; base_url is for 'openai'")
    return LlamaCppChat(model)
