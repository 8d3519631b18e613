"""The only module that touches llama-cpp-python's internals (its context, batch, vocabulary and token
bookkeeping). Drafted greedy decoding and the on-disk prompt-prefix cache need them; the public API has
no batched verification and no raw state access. Tested with llama-cpp-python 0.3.36 (pinned below 0.4 in
pyproject.toml): whoever upgrades it reruns tests/agent/test_speculative.py and tests/agent/test_llm_gguf.py.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np


class LlamaHandle:
    """A ``llama_cpp.Llama`` seen as: the tokens in its KV cache, batched decoding, logits and raw state."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm

    # --- the tokens in the KV cache ---------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return int(self.llm.n_tokens)

    def cached(self) -> list[int]:
        """The tokens whose keys and values are in the cache, in order."""
        return self.llm.input_ids[: self.llm.n_tokens].tolist()

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` cached tokens; drop the rest from the cache."""
        self.llm.n_tokens = n
        self.llm._ctx.kv_cache_seq_rm(-1, n, -1)

    def eval(self, tokens: list[int], keep: int) -> None:
        """Keep ``keep`` cached tokens and evaluate ``tokens`` after them (llama-cpp-python's own eval)."""
        self.llm.n_tokens = max(keep, 0)
        self.llm.eval(tokens)

    def decode(self, batch: list[int], logits_all: bool) -> int:
        """Evaluate ``batch`` after the cached tokens in one forward pass; returns where it started."""
        n_past = self.llm.n_tokens
        self.llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=logits_all)
        self.llm._ctx.decode(self.llm._batch)
        self.llm.input_ids[n_past: n_past + len(batch)] = batch
        self.llm.n_tokens = n_past + len(batch)
        return n_past

    # --- outputs ----------------------------------------------------------------------------------
    def argmax(self, index: int) -> int:
        """The most likely next token after batch position ``index`` (-1: the last one)."""
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, index)
        logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.llm.n_vocab(),))
        return int(logits.argmax())

    def is_end(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token))

    # --- raw state (the prompt-prefix cache on disk) --------------------------------------------
    def state(self) -> bytes:
        import llama_cpp

        ctx = self.llm._ctx.ctx
        size = llama_cpp.llama_state_get_size(ctx)
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_get_data(ctx, buf, size)
        return bytes(buf)[:n]

    def restore(self, data: bytes, tokens: list[int]) -> None:
        """Load a state saved by :meth:`state` after evaluating exactly ``tokens``."""
        import llama_cpp

        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if llama_cpp.llama_state_set_data(self.llm._ctx.ctx, buf, len(data)) != len(data):
            raise RuntimeError("size mismatch")
        self.llm.input_ids[: len(tokens)] = tokens
        self.llm.n_tokens = len(tokens)
