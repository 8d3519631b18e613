"""A chunk's heading path (its document's title, then its section path) and the heading's own vector.

The writer embeds each distinct heading once per run, beside the passages, and stores the vector with
every chunk under it (``hvec``: float16, base64, 1 KiB for MiniLM), so that readers never embed
headings themselves: a reader opening a store of 100k chunks reads their heading vectors as it reads
their text. Chunks written before this (no ``hvec``) get theirs embedded by the reader, once per process.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np


def heading_text(meta: dict[str, Any]) -> str:
    """A chunk's heading path as one line: its document's title, then its section path."""
    title = str(meta.get("title", ""))
    section = str(meta.get("section", ""))
    return " > ".join(x for x in (title, section) if x)


def encode_vector(vector: np.ndarray) -> str:
    """A unit vector as stored in chunk metadata (float16 is ample for a cosine that is one feature)."""
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode("ascii")


def decode_vector(stored: object, dim: int | None = None) -> np.ndarray | None:
    """The vector :func:`encode_vector` stored, or None when absent, malformed or of another size."""
    if not isinstance(stored, str) or not stored:
        return None
    try:
        raw = base64.b64decode(stored.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        return None
    if len(raw) % 2 or (dim is not None and len(raw) != 2 * dim):
        return None
    return np.frombuffer(raw, dtype="<f2").astype(np.float32)
