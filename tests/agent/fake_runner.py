"""A model runner for the worker's supervision tests: the real runner protocol (:func:`agent.llm.runner.serve`)
around a backend that crashes the way native runtimes do, without loading a model.

Run by :class:`agent.llm.worker.WorkerBackend` as ``python -m tests.agent.fake_runner FD``; the spec's kwargs
choose the behaviour:

* ``mode="crash"``: every chat ends the process with SIGSEGV;
* ``mode="crash-if-repacked"``: SIGSEGV when the spec asks for repacking ("auto" or "on"), as llama.cpp's AMX
  path does; with "off" it answers;
* ``mode="echo"``: answers with the last user message, streamed word by word;
* ``mode="fail-load"``: the model does not load (a typed error).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from agent.llm.base import ChatResult, ToolSchema
from agent.llm.runner import RunnerSpec, main
from tools.errors import ModelUnavailableError


class CrashingBackend:
    def __init__(self, spec: RunnerSpec, progress: Any) -> None:
        self.mode = spec.kwargs.get("mode", "echo")
        self.repack = spec.kwargs.get("repack", "auto") != "off"
        self.progress = progress
        self.name = "fake:crashing"

    def load(self) -> dict[str, Any]:
        if self.mode == "fail-load":
            raise ModelUnavailableError("could not load GGUF model broken.gguf: not a GGUF file")
        return {"repack": self.repack}

    def chat(self, messages: list[dict[str, Any]], tools: list[ToolSchema] | None = None, *,
             tool_choice: str = "auto", on_token: Any = None, max_tokens: int | None = None) -> ChatResult:
        if self.mode == "crash" or (self.mode == "crash-if-repacked" and self.repack):
            os.kill(os.getpid(), signal.SIGSEGV)
        words = str(messages[-1]["content"]).split()
        for w in words:
            self.progress()
            if on_token is not None:
                on_token(w + " ")
        checked = [t.check({"echo": True}) for t in tools or [] if t.check is not None]
        return ChatResult(text=" ".join(words) + "".join(f" [{c}]" for c in checked if c), finish_reason="stop")

    def close(self) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main(factory=CrashingBackend))
