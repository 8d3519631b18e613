"""Every implementation of our own interfaces, production and fake, matches its Protocol exactly: the same
members, the same parameters (names, kinds, defaults) and the same annotations, return types included. A
fake that drifts from what the real object returns fails here, not silently in the UI."""

from __future__ import annotations

import inspect
from typing import Protocol

import pytest

from agent.consultation import Consultation
from agent.llm.base import ChatBackend
from agent.llm.gguf import GGUFBackend
from agent.llm.hf import HFBackend
from agent.llm.lazy import LazyBackend
from agent.llm.openai_compat import OpenAIBackend
from agent.llm.runner import InProcessBackend
from agent.llm.worker import WorkerBackend
from agent.protocol import ConsultationAPI
from agent.services import ClassifierService, KnowledgeService
from agent.toolbox.context import ImageClassifiers, KnowledgeSearch
from tests.agent.fake_runner import CrashingBackend
from tests.agent.fakes import NoModelBackend, ScriptedBackend


def protocol_members(proto: type) -> dict[str, object]:
    skip = set(dir(Protocol)) | {"__annotations__", "__dict__", "__weakref__", "__protocol_attrs__"}
    out = {name: value for name, value in vars(proto).items() if not name.startswith("_abc") and name not in skip}
    for name in getattr(proto, "__annotations__", {}):
        out.setdefault(name, None)  # a plain attribute such as ``name: str``
    return out


def mismatches(impl: type, proto: type) -> list[str]:
    problems = []
    for name, member in protocol_members(proto).items():
        if name.startswith("__") and name not in ("__call__",):
            continue
        if not hasattr(impl, name) and name not in getattr(impl, "__annotations__", {}):
            problems.append(f"{impl.__name__} lacks {name}")
            continue
        if member is None or isinstance(member, property):
            continue
        want, got = inspect.signature(member), inspect.signature(getattr(impl, name))
        if want != got:
            problems.append(f"{impl.__name__}.{name}{got} differs from {proto.__name__}.{name}{want}")
    return problems


def browser_policy_backend() -> type:
    import importlib

    try:
        return importlib.import_module("tests.agent.test_ui_browser").PolicyBackend
    except (ImportError, pytest.skip.Exception):  # no playwright or chromium: the module skips itself
        pytest.skip("tests.agent.test_ui_browser is not importable here")


@pytest.mark.parametrize(("impl", "proto"), [
    (Consultation, ConsultationAPI),
    (KnowledgeService, KnowledgeSearch),
    (ClassifierService, ImageClassifiers),
    (ScriptedBackend, ChatBackend),
    (NoModelBackend, ChatBackend),
    (LazyBackend, ChatBackend),
    (WorkerBackend, ChatBackend),
    (OpenAIBackend, ChatBackend),
    (GGUFBackend, ChatBackend),
    (GGUFBackend, InProcessBackend),
    (HFBackend, ChatBackend),
    (HFBackend, InProcessBackend),
    (CrashingBackend, InProcessBackend),  # the supervision tests' runner backend (a process-boundary fake)
])
def test_implementation_matches_its_protocol(impl, proto):
    assert mismatches(impl, proto) == []


def test_browser_fake_backend_matches_the_protocol():
    assert mismatches(browser_policy_backend(), ChatBackend) == []


def test_the_check_catches_a_drifting_fake():
    class Drifted:
        name = "drifted"

        def chat(self, messages, tools=None, *, tool_choice="auto", on_token=None):  # max_tokens dropped
            return {"text": "a dict, not a ChatResult"}

        def close(self) -> None:
            return None

    assert mismatches(Drifted, ChatBackend) and any("chat" in p for p in mismatches(Drifted, ChatBackend))
