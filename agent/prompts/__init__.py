"""Prompt templates shipped as Markdown files, rendered strictly: ``{{name}}`` placeholders only.

A placeholder without a value, or a value without a placeholder, is an error (a silent gap in a
prompt is a bug that no test would otherwise see).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_VAR = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


class PromptError(ValueError):
    """A template is missing, or its variables do not match the values given."""


@cache
def template(name: str) -> str:
    try:
        return resources.files("agent.prompts").joinpath(f"{name}.md").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise PromptError(f"prompt template '{name}.md' not found") from None


def render(name: str, **values: object) -> str:
    text = template(name)
    wanted = set(_VAR.findall(text))
    missing = wanted - values.keys()
    if missing:
        raise PromptError(f"prompt '{name}' needs {', '.join(sorted(missing))}")
    extra = values.keys() - wanted
    if extra:
        raise PromptError(f"prompt '{name}' has no placeholder for {', '.join(sorted(extra))}")
    return _VAR.sub(lambda m: str(values[m.group(1)]), text)
