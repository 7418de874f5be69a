"""Fast latent inference: the spliced prompt fed to the quantized GGUF model through llama.cpp.

llama.cpp accepts a batch of embeddings in place of token ids, so the prompt's text runs as
tokens, the adapter's output runs as embeddings at the placeholder's positions, and decoding
continues on tokens, all in the quantized model. The adapter was trained against the same
weights (the HF model is the dequantised GGUF), so answers match the PyTorch path.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speechllm import models
from speechllm._optional import require
from speechllm.errors import ModelError


class LlamaCppLatentDecoder:
    """Greedy decoding from (text ids, embeddings, text ids) with a GGUF model."""

    def __init__(self, model: str | os.PathLike[str], n_ctx: int = 1024,
                 n_threads: int | None = None) -> None:
        self._lib = require("llama_cpp", "llm")
        text = str(model)
        path = (models.resolve(text, models.REGISTRY[text].role) if text in models.REGISTRY
                else Path(text))
        if not Path(path).is_file():
            raise ModelError(f"{path} is not a GGUF file")
        try:
            self.llm = self._lib.Llama(str(path), n_ctx=n_ctx, n_threads=n_threads,
                                       verbose=False)
        except ValueError as exc:
            raise ModelError(f"cannot load {path}: {exc}") from None
        self.n_embd = int(self.llm.n_embd())
        self.n_vocab = int(self.llm.n_vocab())
        # Embeddings go in as the HF model takes `inputs_embeds`: Gemma's sqrt(n_embd) factor
        # lives in HF's embedding module and in llama.cpp's token lookup, so neither applies
        # it to embedding input (checked by the parity test).

    def _logits(self) -> np.ndarray:
        ptr = self._lib.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def _embed(self, embeds: np.ndarray) -> None:
        n, dim = embeds.shape
        if dim != self.n_embd:
            raise ValueError(f"embeddings have {dim} dims; the model takes {self.n_embd}")
        batch = self._lib.llama_batch_init(n, dim, 1)
        try:
            flat = np.ascontiguousarray(embeds, dtype=np.float32).reshape(-1)
            ctypes.memmove(batch.embd, flat.ctypes.data, flat.nbytes)
            start = self.llm.n_tokens
            for i in range(n):
                batch.pos[i] = start + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = i == n - 1
            batch.n_tokens = n
            if self._lib.llama_decode(self.llm._ctx.ctx, batch) != 0:
                raise RuntimeError("llama_decode failed on the audio embeddings")
        finally:
            self._lib.llama_batch_free(batch)
        self.llm.input_ids[start:start + n] = 0  # positions hold embeddings, not ids
        self.llm.n_tokens += n

    def _prefill(self, before: Sequence[int], embeds: np.ndarray, after: Sequence[int],
                 extra: int) -> None:
        if len(before) + len(embeds) + len(after) + extra > self.llm.n_ctx():
            raise ValueError("the prompt and answer do not fit the llama.cpp context")
        self.llm.reset()
        self.llm._ctx.kv_cache_clear()
        if before:
            self.llm.eval(list(before))
        self._embed(embeds)
        if after:
            self.llm.eval(list(after))

    def logprobs(self, before: Sequence[int], embeds: np.ndarray, after: Sequence[int],
                 continuation: Sequence[int]) -> np.ndarray:
        """Log-probabilities over the vocabulary (len(continuation) + 1, n_vocab): of the
        token after the prompt, then after each token of `continuation` (teacher-forced)."""
        self._prefill(before, embeds, after, len(continuation))
        rows = [self._logits().astype(np.float64)]
        for token in continuation:
            self.llm.eval([int(token)])
            rows.append(self._logits().astype(np.float64))
        logits = np.stack(rows)
        peak = logits.max(axis=1, keepdims=True)
        return logits - peak - np.log(np.exp(logits - peak).sum(axis=1, keepdims=True))

    def generate(self, before: Sequence[int], embeds: np.ndarray, after: Sequence[int],
                 max_tokens: int, end_ids: set[int],
                 on_token: Callable[[list[int]], Any] | None = None) -> list[int]:
        self._prefill(before, embeds, after, max_tokens)
        ids: list[int] = []
        for _ in range(max_tokens):
            token = int(np.argmax(self._logits()))
            if token in end_ids:
                break
            ids.append(token)
            if on_token is not None:
                on_token(ids)
            self.llm.eval([token])
        return ids
