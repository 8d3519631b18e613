"""What this machine's CPU offers the embedded LLM: instruction sets, cores, memory, and how busy it is.

Read at run time on the machine that runs the model, never assumed from the machine that built the
code: hospital servers differ (AVX2 only, AVX-512, AMX on Sapphire Rapids and later Xeons).
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from dataclasses import dataclass

# instruction sets that change how llama.cpp runs (the flags as /proc/cpuinfo spells them)
FEATURES = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni",
            "amx_tile", "amx_int8", "amx_bf16")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    cores: int
    features: tuple[str, ...]  # those of FEATURES the CPU has
    memory_bytes: int | None

    @property
    def has_amx(self) -> bool:
        """Intel AMX (Sapphire Rapids and later Xeons): llama.cpp repacks quantised weights for it at load."""
        return "amx_int8" in self.features or "amx_tile" in self.features


def _cpuinfo_text() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def cpu_info(cpuinfo_text: str | None = None) -> CpuInfo:
    """This machine's CPU (``cpuinfo_text``: the contents of /proc/cpuinfo, for tests)."""
    text = _cpuinfo_text() if cpuinfo_text is None else cpuinfo_text
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags" and not flags:
            flags = set(value.split())
        elif key == "model name" and value.strip():
            model = value.strip()
    memory = None
    with contextlib.suppress(ValueError, OSError, AttributeError):  # not on every platform
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return CpuInfo(model=model, cores=os.cpu_count() or 1, features=tuple(f for f in FEATURES if f in flags),
                   memory_bytes=memory)


def repack_weights(policy: str, info: CpuInfo | None = None) -> bool:
    """Whether llama.cpp may repack the quantised weights at load (its "extra buffer types").

    ``policy``: "on", "off" or "auto". auto is off where the CPU has AMX: llama.cpp's AMX repack of
    Q4_K/Q6_K weights segfaults at the first decode on such CPUs (upstream issue 20824, closed unfixed),
    and on where it has not (the CPU_REPACK layouts for AVX2/AVX-512 are mature and faster).
    """
    if policy in ("on", "off"):
        return policy == "on"
    return not (info or cpu_info()).has_amx


def busy_cores(interval_s: float = 0.25) -> float | None:
    """Cores in use by *other* processes right now, from two samples of /proc/stat; None where unavailable.

    This process's own CPU time in the window (from /proc/self/stat) is subtracted: a process that is still
    starting (imports, loading the model) would otherwise count itself as load and pick one thread on an
    idle machine. The load average is the wrong signal too: it lags by a minute and counts tasks waiting on
    I/O, and some virtual machines sit at a load of 1 while idle (measured here: load 1.0 on an idle 2-core
    VM picked one thread, and the 1.5B guideline turn took 13.7 s instead of 8.7 s).
    """
    def sample() -> tuple[int, int, int]:
        with open("/proc/stat", encoding="ascii") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        with open("/proc/self/stat", encoding="ascii") as fh:
            own = fh.read().rsplit(")", 1)[1].split()
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values[:8]), idle, int(own[11]) + int(own[12])  # utime + stime of this process

    try:
        total0, idle0, own0 = sample()
        time.sleep(interval_s)
        total1, idle1, own1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    cores = os.cpu_count() or 1
    busy = (total1 - total0) - (idle1 - idle0) - (own1 - own0)
    return max(0.0, cores * busy / (total1 - total0))


def auto_threads() -> int:
    """All cores when the machine is idle, fewer when other work is using them.

    llama.cpp's worker threads spin while they wait for each other; on an oversubscribed CPU a thread
    count equal to the core count can be ten times slower than one thread (measured: 0.5B model,
    2 cores, 9 busy processes: 1 thread 2.3 s, 2 threads 19 s for the same 40 tokens).
    """
    cores = os.cpu_count() or 1
    busy = busy_cores()
    if busy is None:  # no /proc (not Linux): fall back to the load average
        try:
            busy = os.getloadavg()[0]
        except OSError:  # pragma: no cover - not on every platform
            return cores
    return max(1, min(cores, round(cores - busy)))
