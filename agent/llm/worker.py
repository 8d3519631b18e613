"""The embedded model in a supervised worker process, as a local model server runs its runner.

:class:`WorkerBackend` implements :class:`agent.llm.base.ChatBackend` for the app; the model itself lives in
a child process (:mod:`agent.llm.runner`, one per loaded model) that it talks to over a socket pair, with
the answer streamed token by token. What the child's native code does (llama.cpp, torch) cannot take the app
down:

* a crash (SIGSEGV, SIGABRT), an out-of-memory kill (SIGKILL) or an exit ends only the turn in flight, with
  :class:`LLMCrashedError` ("the language model stopped unexpectedly ... ask again");
* a hang (no token and no forward pass for ``stall_s`` seconds) stops the child and ends the turn with
  :class:`LLMTimeoutError`;
* the worker is then restarted in the background after a back-off (1, 2, 5, 10, 30 s), and after
  ``max_crashes`` crashes within ``crash_window_s`` it is not restarted again for that long: every turn gets
  :class:`LLMUnavailableError` saying so (nothing loops);
* a child that crashes with the weights repacked (``repack`` auto) before it ever answered is restarted
  with repacking off: that is the known failure of llama.cpp's AMX path, and any like it.

The prompt-prefix KV cache, drafted decoding, the thread choice and streaming all run inside the child,
unchanged; a tool's argument check (a Python callable) is run here, on the child's request.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from agent.llm.base import ChatResult, TokenCallback, ToolSchema
from agent.llm.runner import RunnerSpec
from tools import errors
from tools.errors import LLMCrashedError, LLMError, LLMTimeoutError, LLMUnavailableError

log = logging.getLogger(__name__)

BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
# error classes a runner may report, re-raised here as themselves; anything else becomes LLMError
_TYPED = {name: getattr(errors, name) for name in ("LLMError", "LLMCrashedError", "LLMTimeoutError",
                                                   "LLMUnavailableError", "LLMContextError",
                                                   "ModelUnavailableError", "UnknownNameError")}


def _how_it_ended(returncode: int | None) -> str:
    """The cause of a child's end, for the clinician's message and the log."""
    if returncode is None:
        return "it stopped responding"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if name == "SIGKILL":
            return "it was killed by the system, SIGKILL, often for lack of memory"
        return f"a crash in its native code, {name}"
    return f"its process exited with status {returncode}"


class WorkerBackend:
    """A :class:`ChatBackend` whose model runs in a supervised child process. Cheap to construct: the child
    starts on the first :meth:`chat` (or :meth:`start`). Calls are serialised, as in the in-process backends."""

    name: str

    def __init__(self, spec: RunnerSpec, *, name: str, stall_s: float = 120.0, start_timeout_s: float = 300.0,
                 timeout_s: float = 120.0, max_crashes: int = 3, crash_window_s: float = 600.0,
                 backoff_s: tuple[float, ...] = BACKOFF_S, runner: str = "agent.llm.runner") -> None:
        self.spec = spec
        self.runner = runner  # the module run as the child (tests put a crashing one at this boundary)
        self.name = name
        self.stall_s = stall_s
        self.start_timeout_s = start_timeout_s
        self.timeout_s = timeout_s
        self.max_crashes = max_crashes
        self.crash_window_s = crash_window_s
        self.backoff_s = backoff_s
        self.info: dict[str, Any] = {}  # what the running child chose (pid, threads, repack, load time)
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._lock = threading.RLock()
        self._seq = 0
        self._crashes: collections.deque[float] = collections.deque()
        self._answered = False  # the current child completed a chat
        self._no_repack = False  # a repacked child crashed before answering: restart without repacking
        self._closed = False
        self._in_flight = False

    # --- the child's life ----------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def repack_fallback(self) -> bool:
        """A child crashed with its weights repacked before it ever answered: children now start without."""
        return self._no_repack

    @property
    def busy(self) -> bool:
        """A chat is in flight (the child is reading a prompt or generating)."""
        return self._in_flight

    def start(self) -> dict[str, Any]:
        """Start the child and load the model now (the UI's warm-up); returns what it chose."""
        with self._lock:
            self._closed = False
            self._ensure_started()
            return dict(self.info)

    def _spec_for_start(self) -> RunnerSpec:
        if self._no_repack and "repack" in self.spec.kwargs:
            return replace(self.spec, kwargs={**self.spec.kwargs, "repack": "off"})
        return self.spec

    def _crash_limit_reached(self) -> float | None:
        """Seconds until a restart is allowed again, when the crash limit is reached; else None."""
        now = time.monotonic()
        while self._crashes and now - self._crashes[0] > self.crash_window_s:
            self._crashes.popleft()
        if len(self._crashes) >= self.max_crashes:
            return self.crash_window_s - (now - self._crashes[0])
        return None

    def _ensure_started(self) -> None:
        if self.running:
            return
        wait = self._crash_limit_reached()
        if wait is not None:
            raise LLMUnavailableError(
                f"the language model crashed {len(self._crashes)} times in the last "
                f"{self.crash_window_s / 60:.0f} minutes and is not restarted for another {wait / 60:.0f} "
                "minutes; run `radconsult doctor` to see why (or set RADCONSULT_LLM_REPACK=off)")
        if self._crashes:  # back off after a crash: a child that dies at once must not spin
            delay = self.backoff_s[min(len(self._crashes) - 1, len(self.backoff_s) - 1)]
            remaining = delay - (time.monotonic() - self._crashes[-1])
            if remaining > 0:
                time.sleep(remaining)
        self._spawn()

    def _spawn(self) -> None:
        parent_sock, child_sock = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", self.runner, str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                close_fds=True)
        except OSError as exc:
            parent_sock.close()
            raise LLMUnavailableError(f"could not start the language-model worker: {exc}") from None
        finally:
            child_sock.close()
        conn = Connection(parent_sock.detach())
        self._proc, self._conn, self._answered = proc, conn, False
        spec = self._spec_for_start()
        t0 = time.monotonic()
        try:
            conn.send(("start", spec))
            while True:
                left = self.start_timeout_s - (time.monotonic() - t0)
                if left <= 0 or not conn.poll(left):
                    self._stop_child()
                    raise LLMUnavailableError(f"the language model did not load within {self.start_timeout_s:.0f} s")
                msg = conn.recv()
                if msg[0] == "log":
                    self._relay_log(msg)
                elif msg[0] == "ready":
                    self.info = msg[1]
                    log.info("language-model worker %s ready (pid %s, %s)", self.name, proc.pid,
                             ", ".join(f"{k} {v}" for k, v in msg[1].items() if k not in ("pid", "name")))
                    return
                elif msg[0] == "error":
                    self._stop_child()
                    raise _TYPED.get(msg[2], LLMError)(msg[3])
        except (EOFError, OSError):
            how = _how_it_ended(self._reap())
            self._crashes.append(time.monotonic())
            raise LLMUnavailableError(f"the language model ended while loading ({how}); run `radconsult doctor`") from None

    def _reap(self, wait_s: float = 5.0) -> int | None:
        """The child's exit status once it has gone (it is killed if it lingers); the socket is closed."""
        proc, self._proc = self._proc, None
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None
        if proc is None:
            return None
        try:
            return proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def _stop_child(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._reap()

    def _after_crash(self, returncode: int | None, hung: bool) -> None:
        """Record the crash, choose how to restart, and restart in the background after the back-off."""
        self._crashes.append(time.monotonic())
        repacked = bool(self.info.get("repack"))
        if (repacked and not self._answered and not hung and returncode is not None and returncode < 0
                and self.spec.kwargs.get("repack", "auto") == "auto"):
            self._no_repack = True
            log.warning("the language model crashed with its weights repacked before it ever answered; it is "
                        "restarted with repacking off (set RADCONSULT_LLM_REPACK=off to make that permanent)")
        if self._crash_limit_reached() is None and not self._closed:
            threading.Thread(target=self._restart_quietly, daemon=True, name="radconsult-llm-restart").start()

    def _restart_quietly(self) -> None:
        with self._lock:
            if self._closed or self.running:
                return
            try:
                self._ensure_started()
            except LLMError as exc:  # the next turn will try again and say why
                log.warning("restarting the language model failed: %s", exc)

    # --- ChatBackend ---------------------------------------------------------------------------------
    def chat(self, messages: list[dict[str, Any]], tools: list[ToolSchema] | None = None, *,
             tool_choice: str = "auto", on_token: TokenCallback | None = None,
             max_tokens: int | None = None) -> ChatResult:
        with self._lock:
            self._closed = False
            self._ensure_started()
            assert self._conn is not None
            self._seq += 1
            seq, conn = self._seq, self._conn
            checks = {t.name: t.check for t in tools or [] if t.check is not None}
            request = {"messages": messages, "tool_choice": tool_choice, "max_tokens": max_tokens,
                       "stream": on_token is not None,
                       "tools": None if tools is None else [(t.name, t.description, t.parameters, t.check is not None)
                                                            for t in tools]}
            self._in_flight = True
            try:
                conn.send(("chat", seq, request))
                return self._receive(conn, seq, on_token, checks)
            except (EOFError, OSError):
                pid = self._proc.pid if self._proc else None
                returncode = self._reap()
                self._after_crash(returncode, hung=False)
                log.error("language-model worker (pid %s) ended in the middle of an answer: %s", pid,
                          _how_it_ended(returncode))
                raise LLMCrashedError(
                    f"the language model stopped unexpectedly ({_how_it_ended(returncode)}); it is being "
                    "restarted: please ask again") from None
            finally:
                self._in_flight = False

    def _receive(self, conn: Connection, seq: int, on_token: TokenCallback | None,
                 checks: dict[str, Any]) -> ChatResult:
        deadline = time.monotonic() + self.timeout_s + self.stall_s
        failure: BaseException | None = None  # the caller's callback failed: drain the reply, then raise it
        while True:
            if not conn.poll(min(self.stall_s, max(0.0, deadline - time.monotonic()))):
                pid = self._proc.pid if self._proc else None
                self._stop_child()
                self._after_crash(None, hung=True)
                log.error("language-model worker (pid %s) gave no sign of life for %.0f s; stopped", pid,
                          self.stall_s)
                raise LLMTimeoutError(
                    f"the language model stopped responding (nothing for {self.stall_s:.0f} s); it was stopped and "
                    "is being restarted: please ask again")
            msg = conn.recv()
            kind = msg[0]
            if kind == "log":
                self._relay_log(msg)
                continue
            if msg[1] != seq:  # a reply to an earlier request (cannot happen while calls are serialised)
                continue
            if kind == "token" and on_token is not None and failure is None:
                try:
                    on_token(msg[2])
                except BaseException as exc:  # noqa: BLE001 - re-raised once the reply is drained
                    failure = exc
            elif kind == "check":
                check = checks.get(msg[2])
                conn.send(("checked", seq, check(msg[3]) if check is not None else None))
            elif kind == "result":
                self._answered = True
                if failure is not None:
                    raise failure
                return msg[2]
            elif kind == "error":
                self._answered = True
                if failure is not None:
                    raise failure
                raise _TYPED.get(msg[2], LLMError)(msg[3])

    @staticmethod
    def _relay_log(msg: tuple[Any, ...]) -> None:
        logging.getLogger(msg[2]).log(msg[1], "%s", msg[3])

    def close(self) -> None:
        """Stop the child (politely, then by force); the next :meth:`chat` starts a new one."""
        with self._lock:
            self._closed = True
            if self._conn is not None and self.running:
                with contextlib.suppress(OSError, EOFError):
                    self._conn.send(("close",))
            self._reap(wait_s=5.0)
