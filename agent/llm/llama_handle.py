"""The only module that touches llama-cpp-python's internals (its context, batch, vocabulary and token
bookkeeping). Drafted greedy decoding and the on-disk prompt-prefix cache need them; the public API has
no batched verification and no raw state access. Tested with llama-cpp-python 0.3.36 (pinned below 0.4 in
pyproject.toml): whoever upgrades it reruns tests/agent/test_speculative.py and tests/agent/test_llm_gguf.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

_LOAD_LOCK = threading.Lock()


@contextlib.contextmanager
def repack_choice(repack: bool) -> Iterator[None]:
    """Models loaded inside this block repack their weights at load, or not.

    llama.cpp's model parameter ``use_extra_bufts`` (``--no-repack`` in its own tools) chooses whether the
    CPU backend moves quantised weights into its extra buffer types (AMX tiles, the AVX2/AVX-512 repacked
    layouts). llama-cpp-python does not expose it, but builds its parameters from
    ``llama_model_default_params()``: that function is swapped for the block, under a lock.
    """
    import llama_cpp.llama_cpp as native

    with _LOAD_LOCK:
        original = native.llama_model_default_params

        def params() -> Any:
            p = original()
            p.use_extra_bufts = repack
            return p

        native.llama_model_default_params = params
        try:
            yield
        finally:
            native.llama_model_default_params = original


def load_llama(model_path: str, *, repack: bool, **kwargs: Any) -> Any:
    """A ``llama_cpp.Llama`` with weight repacking at load switched on or off (:func:`repack_choice`)."""
    import llama_cpp

    with repack_choice(repack):
        return llama_cpp.Llama(model_path=model_path, **kwargs)


class LlamaHandle:
    """A ``llama_cpp.Llama`` seen as: the tokens in its KV cache, batched decoding, logits and raw state."""

    def __init__(self, llm: Any, progress: Callable[[], None] | None = None) -> None:
        self.llm = llm
        self.progress = progress  # called after each forward pass: a supervisor's sign of life

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
        """Keep ``keep`` cached tokens and evaluate ``tokens`` after them (llama-cpp-python's own eval),
        one batch at a time so that a long prompt shows progress."""
        self.llm.n_tokens = max(keep, 0)
        step = max(1, int(self.llm.n_batch))
        for start in range(0, len(tokens), step):
            self.llm.eval(tokens[start: start + step])
            if self.progress is not None:
                self.progress()

    def decode(self, batch: list[int], logits_all: bool) -> int:
        """Evaluate ``batch`` after the cached tokens in one forward pass; returns where it started."""
        n_past = self.llm.n_tokens
        self.llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=logits_all)
        self.llm._ctx.decode(self.llm._batch)
        self.llm.input_ids[n_past: n_past + len(batch)] = batch
        self.llm.n_tokens = n_past + len(batch)
        if self.progress is not None:
            self.progress()
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
