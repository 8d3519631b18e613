"""The clinical vocabulary shared by every reader of text in the project (lowest layer: tools)."""

from __future__ import annotations
