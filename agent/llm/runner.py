"""The model runner: the child process that holds one loaded model and answers chat requests.

Started by :class:`agent.llm.worker.WorkerBackend` as ``python -m agent.llm.runner FD``, where FD is its end of
a socket pair. It speaks :mod:`multiprocessing.connection` messages (tuples) on that socket:

parent -> runner                          runner -> parent
``("start", spec)``                       ``("ready", info)`` or ``("error", class name, message)``
``("chat", seq, request)``                ``("token", seq, text)``  a streamed piece of the answer
                                          ``("alive", seq)``        after forward passes, at most once a second
                                          ``("check", seq, tool, arguments)``  a tool's argument check, run by
``("checked", seq, problem or None)``                                the parent (checks are not picklable)
                                          ``("log", level, logger, message)``
                                          ``("result", seq, ChatResult)`` or ``("error", seq, class, message)``
``("close",)``

A native crash here (llama.cpp, torch) ends this process only; the parent sees the socket close and reports
the turn as failed. The runner exits when the parent goes away (the socket closes, or the kernel's
watchdog on the parent's pid).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

from agent.llm.base import ChatBackend, ToolSchema


@dataclass(frozen=True)
class RunnerSpec:
    """What the runner loads: ``kind`` "gguf" or "hf" and the backend's keyword arguments (picklable)."""

    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)


class InProcessBackend(ChatBackend, Protocol):
    """A backend that holds its model in this process (gguf, hf): what a runner can serve."""

    def load(self) -> dict[str, Any]:
        """Load the model now; returns what was chosen (threads, device ...), for the log and doctor."""
        ...


def build_backend(spec: RunnerSpec, progress: Callable[[], None] | None = None) -> InProcessBackend:
    """The in-process backend ``spec`` names (used inside the runner, and by ``llm_isolation=inprocess``)."""
    if spec.kind == "gguf":
        from agent.llm.gguf import GGUFBackend

        return GGUFBackend(progress=progress, **spec.kwargs)
    if spec.kind == "hf":
        from agent.llm.hf import HFBackend

        return HFBackend(progress=progress, **spec.kwargs)
    raise ValueError(f"no runner for backend kind {spec.kind!r}")


class _Heartbeat:
    """Called after forward passes; sends ``("alive", seq)`` at most once a second."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.seq = 0
        self.last = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self.last >= 1.0:
            self.last = now
            self.conn.send(("alive", self.seq))


class _ForwardLogs(logging.Handler):
    """The runner's log records go to the parent's logging (``radconsult -v`` shows the decode statistics)."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # the parent is gone: nothing to log to
            self.conn.send(("log", record.levelno, record.name, record.getMessage()))


def _die_with_parent(interval_s: float = 1.0) -> None:
    """Exit when the parent process is gone, even while native code holds this process in a long call.

    Between requests the closed socket tells; this watchdog covers a runtime stuck in native code. (Linux's
    parent-death signal is tied to the thread that started the child, and the supervisor restarts children
    from short-lived threads, so it cannot be used.)
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="radconsult-runner-watchdog").start()


def _chat(conn: Connection, backend: InProcessBackend, heartbeat: _Heartbeat, seq: int,
          request: dict[str, Any]) -> None:
    def make_check(tool: str) -> Callable[[dict[str, Any]], str | None]:
        def check(arguments: dict[str, Any]) -> str | None:
            conn.send(("check", seq, tool, arguments))
            reply = conn.recv()
            return reply[2] if reply[0] == "checked" and reply[1] == seq else None

        return check

    tools = None
    if request["tools"] is not None:
        tools = [ToolSchema(name, description, parameters, check=make_check(name) if has_check else None)
                 for name, description, parameters, has_check in request["tools"]]
    heartbeat.seq = seq
    on_token = (lambda piece: conn.send(("token", seq, piece))) if request["stream"] else None
    try:
        result = backend.chat(request["messages"], tools, tool_choice=request["tool_choice"], on_token=on_token,
                              max_tokens=request["max_tokens"])
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent as a typed error
        conn.send(("error", seq, type(exc).__name__, str(exc)))
        return
    conn.send(("result", seq, result))


def serve(conn: Connection, factory: Callable[[RunnerSpec, Callable[[], None]], InProcessBackend] = build_backend) -> int:
    """Load the model named by the first message, then answer chat requests until told to close."""
    logging.basicConfig(level=logging.INFO, handlers=[_ForwardLogs(conn)], force=True)
    message = conn.recv()
    if message[0] != "start":
        return 2
    spec: RunnerSpec = message[1]
    heartbeat = _Heartbeat(conn)
    try:
        backend = factory(spec, heartbeat)
        info = {"pid": os.getpid(), "name": backend.name, **backend.load()}
    except Exception as exc:  # noqa: BLE001 - a model that will not load is reported, not retried here
        conn.send(("error", 0, type(exc).__name__, str(exc)))
        return 1
    conn.send(("ready", info))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return 0
        if message[0] == "close":
            backend.close()
            return 0
        if message[0] == "chat":
            _chat(conn, backend, heartbeat, message[1], message[2])


def main(argv: list[str] | None = None,
         factory: Callable[[RunnerSpec, Callable[[], None]], InProcessBackend] = build_backend) -> int:
    args = sys.argv[1:] if argv is None else argv
    _die_with_parent()
    conn = Connection(int(args[0]))
    try:
        return serve(conn, factory)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return 0  # the parent went away mid-message
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
