"""Run one input in a forked child with time and memory limits, and say how it ended.

Outcomes: ``loaded`` (the target returned), ``typed`` (a :class:`tools.errors.RadconsultError`),
``untyped`` (any other exception, or the child killed by a signal such as SIGSEGV), ``hang`` (over
the wall-clock limit while busy, or killed by the CPU-time limit; a child starved of CPU on a busy
machine gets more wall time), ``memory`` (MemoryError under the address-space
limit, killed by the kernel for memory, or a peak resident-set growth over the budget plus slack).

The child is a ``fork`` of the caller: the libraries are imported once, each input costs a few
milliseconds of process start. The peak memory of an input is the growth of the child's high-water
mark (VmHWM, reset through ``/proc/self/clear_refs``) over its resident size when the target starts.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUTCOMES = ("loaded", "typed", "untyped", "hang", "memory")
MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ChildLimits:
    """Per-input limits: ``timeout_s`` wall clock, ``cpu_s`` CPU time (RLIMIT_CPU), ``budget_bytes`` the
    peak memory an input may take (reported as ``memory`` above it plus ``slack_bytes``, which covers
    lazily imported decoders and copy-on-write pages), ``address_space_bytes`` extra virtual memory the
    child may map (RLIMIT_AS, a hard stop so that a runaway input cannot take the machine)."""

    timeout_s: float = 20.0
    cpu_s: int = 30
    budget_bytes: int = 256 * MiB
    slack_bytes: int = 64 * MiB
    address_space_bytes: int = 2048 * MiB


@dataclass(frozen=True)
class Outcome:
    outcome: str               # one of OUTCOMES
    error: str = ""            # exception type (and where it was raised, for untyped errors)
    message: str = ""          # the first 200 characters of the error message
    peak_bytes: int = 0        # resident-set growth while the target ran
    seconds: float = 0.0


def _status(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def _where(exc: BaseException) -> str:
    """``Type at lib/file.py:line [via tools/file.py:line]``: the raising frame, and our last frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__

    def short(f: traceback.FrameSummary) -> str:
        path = Path(f.filename)
        parts = path.parts
        for anchor in ("site-packages", str(REPO.name)):
            if anchor in parts:
                path = Path(*parts[parts.index(anchor) + 1:])
                break
        return f"{path}:{f.lineno}"

    ours = [f for f in frames if f.filename.startswith(str(REPO / "tools"))]
    text = f"{type(exc).__name__} at {short(frames[-1])}"
    if ours and ours[-1] is not frames[-1]:
        text += f" via {short(ours[-1])}"
    return text


def _child(target: Callable[[], Any], limits: ChildLimits, typed: type[BaseException], write_fd: int) -> None:
    """Runs in the forked child: set limits, run ``target``, write one JSON line, never return."""
    import faulthandler
    import logging
    import warnings

    faulthandler.disable()  # a crash is counted, not dumped onto the caller's terminal
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # libraries that print (nibabel's header checks) stay quiet
    os.dup2(devnull, 2)
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    vm = _status("VmSize:")
    resource.setrlimit(resource.RLIMIT_AS, (vm + limits.address_space_bytes, vm + limits.address_space_bytes))
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")  # reset VmHWM to the current resident size
    base = _status("VmRSS:")
    started = time.perf_counter()
    try:
        target()
        result = {"outcome": "loaded"}
    except typed as exc:
        result = {"outcome": "typed", "error": type(exc).__name__, "message": str(exc)[:200]}
    except MemoryError as exc:
        result = {"outcome": "memory", "error": "MemoryError", "message": str(exc)[:200]}
    except BaseException as exc:  # noqa: BLE001 - counting every other failure is the point
        result = {"outcome": "untyped", "error": _where(exc), "message": str(exc)[:200]}
    result["seconds"] = time.perf_counter() - started
    result["peak_bytes"] = max(0, _status("VmHWM:") - base)
    os.write(write_fd, (json.dumps(result) + "\n").encode())


def _spawn(target: Callable[[], Any], limits: ChildLimits, typed: type[BaseException]) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_fd)
            _child(target, limits, typed, write_fd)
        finally:
            os._exit(0)
    os.close(write_fd)
    return pid, read_fd


def _finish(pid: int, read_fd: int, timed_out: bool, limits: ChildLimits, seconds: float) -> Outcome:
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    data = b""
    if not timed_out:
        while chunk := os.read(read_fd, 65536):
            data += chunk
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return Outcome("hang", "timeout", f"no result after {limits.timeout_s:.0f} s", 0, seconds)
    if data:
        result = json.loads(data)
        outcome = result["outcome"]
        if outcome in ("loaded", "typed") and result["peak_bytes"] > limits.budget_bytes + limits.slack_bytes:
            result["message"] = (f"peak {result['peak_bytes'] / MiB:.0f} MiB over the budget of "
                                 f"{limits.budget_bytes / MiB:.0f} MiB; " + result.get("message", ""))
            outcome = "memory"
        return Outcome(outcome, result.get("error", ""), result.get("message", ""), result["peak_bytes"],
                       result["seconds"])
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status))
        if sig == signal.SIGXCPU:
            return Outcome("hang", "SIGXCPU", f"over {limits.cpu_s} s of CPU", 0, seconds)
        if sig == signal.SIGKILL:
            return Outcome("memory", "SIGKILL", "killed (out of memory)", 0, seconds)
        return Outcome("untyped", f"crash {sig.name}", "the child died", 0, seconds)
    return Outcome("untyped", "no result", f"the child exited with {os.waitstatus_to_exitcode(status)}", 0, seconds)


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _starved(pid: int, elapsed: float, limits: ChildLimits) -> bool:
    """True while a child over the wall-clock limit has had too little CPU to count as hung (a shared,
    busy machine): it gets up to 5 more limits of wall time, or until it has used half a limit of CPU."""
    return elapsed < 6 * limits.timeout_s and _cpu_seconds(pid) < limits.timeout_s / 2


def run_all(targets: Iterable[Callable[[], Any]], limits: ChildLimits, typed: type[BaseException],
            jobs: int = 1) -> Iterator[tuple[int, Outcome]]:
    """Run each target in its own child, ``jobs`` at a time; yields (index, outcome) as they finish."""
    pending = iter(enumerate(targets))
    running: dict[int, tuple[int, int, float]] = {}  # read fd -> (index, pid, start)
    exhausted = False
    while running or not exhausted:
        while not exhausted and len(running) < jobs:
            item = next(pending, None)
            if item is None:
                exhausted = True
                break
            index, target = item
            pid, fd = _spawn(target, limits, typed)
            running[fd] = (index, pid, time.monotonic())
        if not running:
            break
        now = time.monotonic()
        wait = max(0.5, min(start + limits.timeout_s for _, _, start in running.values()) - now)
        ready, _, _ = select.select(list(running), [], [], wait)
        now = time.monotonic()
        for fd in list(running):
            index, pid, start = running[fd]
            timed_out = fd not in ready and now - start >= limits.timeout_s and not _starved(pid, now - start, limits)
            if fd in ready or timed_out:
                del running[fd]
                yield index, _finish(pid, fd, timed_out, limits, now - start)
