"""The loader fuzz suite, short and seeded: mutated real files never give an untyped error, a hang or a
memory overrun. The full table: ``python bench/reliability.py --suite fuzz --inputs 10000``."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import shared_dir
from tests.reliability.fuzz import KINDS, load_seeds, make_input, run_campaign
from tests.reliability.harness import ChildLimits, MiB, run_all
from tools.errors import InputError, RadconsultError

SEED = 13       # fixed: the same inputs on every run
INPUTS = 300    # about 30 s on 2 cores


def _shared():
    path = shared_dir() / "data"
    return path if path.is_dir() else None


# --- the harness can tell every outcome apart (so that a clean run means something) -----------------------
def _touch(n: int) -> None:
    block = bytearray(n)
    block[::4096] = b"\x01" * len(block[::4096])  # resident, not only reserved


def _spin() -> None:
    while True:
        pass


def _crash() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def _raise(exc: BaseException) -> None:
    raise exc


def test_harness_tells_each_outcome_apart():
    limits = ChildLimits(timeout_s=1.0, cpu_s=5, budget_bytes=32 * MiB, slack_bytes=16 * MiB,
                         address_space_bytes=512 * MiB)
    targets = [
        lambda: None,
        lambda: _raise(InputError("bad input")),
        lambda: _raise(ValueError("boom")),
        lambda: time.sleep(30),             # no CPU used: waited for up to 6 limits, then a hang
        _spin,                              # busy: a hang once it has used half a limit of CPU
        lambda: _touch(96 * MiB),           # resident growth over budget + slack
        lambda: _touch(4096 * MiB),         # over the address-space limit: MemoryError
        _crash,
    ]
    outcomes = dict(run_all(targets, limits, RadconsultError, jobs=3))
    got = [outcomes[i].outcome for i in range(len(targets))]
    assert got == ["loaded", "typed", "untyped", "hang", "hang", "memory", "memory", "untyped"]
    assert outcomes[2].error.startswith("ValueError at ") and "test_fuzz_loaders.py" in outcomes[2].error
    assert outcomes[7].error == "crash SIGSEGV"
    assert outcomes[5].peak_bytes >= 90 * MiB


# --- the campaign ------------------------------------------------------------------------------------------
def test_seeds_cover_every_kind_and_inputs_are_reproducible():
    seeds = load_seeds(_shared())
    kinds = {s.kind for s in seeds}
    assert kinds == set(KINDS), f"seeds of these kinds are missing: {set(KINDS) - kinds}"
    a = make_input(seeds, SEED, 7)
    assert make_input(seeds, SEED, 7) == a  # an input is rebuilt from (seed, index) alone
    assert any(make_input(seeds, SEED + k, 7).data != a.data for k in range(1, 6))  # other seeds differ


def test_seeded_fuzz_run_has_no_untyped_error_hang_or_memory_overrun(tmp_path):
    report = run_campaign(INPUTS, SEED, jobs=2, shared_data=_shared(), save_dir=tmp_path / "failures")
    totals = report.totals
    assert report.inputs == INPUTS and set(report.by_kind) == set(KINDS)
    assert totals["untyped"] == 0 and totals["hang"] == 0 and totals["memory"] == 0, \
        "\n".join(report.table()) + "\n" + report.describe_failures()
    # the run exercised both sides: mutants that still load, and typed refusals of several kinds
    assert totals["loaded"] >= INPUTS // 10 and totals["typed"] >= INPUTS // 3
    assert len(report.typed_errors) >= 4


@pytest.mark.slow
def test_longer_fuzz_run(tmp_path):
    report = run_campaign(3000, SEED + 1, jobs=2, shared_data=_shared(), save_dir=tmp_path / "failures")
    totals = report.totals
    assert totals["untyped"] == totals["hang"] == totals["memory"] == 0, report.describe_failures()
