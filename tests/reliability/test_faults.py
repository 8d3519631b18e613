"""Fault injection (issue 13, "The suite"): each fault, injected into real processes, ends in a clear error
and loses or duplicates nothing, as `radconsult audit verify`, `radconsult kb stats` and the case database
show afterwards. The faults live in ``bench/reliability_faults.py`` (``python bench/reliability_faults.py``
prints the same rows as a table); each test here runs one and asserts its row.

How each fault is injected on the machine running the tests (the row's ``method`` says which):

- read-only data directory: a read-only bind mount in a private mount namespace when root may mount
  (chmod does not stop root); ``chmod a-w`` when not root; a data directory under a regular file when
  root may not mount (then only the cannot-create half is covered);
- disk full: a 6 MiB tmpfs filled to the last byte, in a private mount namespace; else a simulated
  ENOSPC (Python's writes patched in the child through ``sitecustomize``; SQLite's are not);
- kill -9: SIGKILL of real writer processes at random (seeded) moments.
"""

from __future__ import annotations

import json

import pytest

from bench import reliability_faults as faults
from tests.agent.llm_fixtures import qwen_path  # noqa: F401 - fixture


def _survived(row: dict) -> None:
    assert row["survived"], json.dumps(row, indent=1)
    assert row["lost"] == [] and row["duplicated"] == [] and row["verify_ok"]


def test_readonly_data_directory(tmp_path):
    row = faults.fault_readonly(tmp_path)
    _survived(row)
    assert row["expected_errors"] >= 3 and row["clear_errors"] == row["expected_errors"]


def test_disk_full(tmp_path):
    row = faults.fault_disk_full(tmp_path)
    _survived(row)
    assert row["expected_errors"] >= 4


@pytest.mark.slow
def test_disk_full_simulated_enospc(tmp_path, monkeypatch):
    """The fallback where no file system can be mounted: the same checks with a simulated ENOSPC."""
    monkeypatch.setattr(faults, "can_mount", lambda: False)
    row = faults.fault_disk_full(tmp_path)
    assert row["method"].startswith("simulated")
    _survived(row)


def test_kill9_during_audit_writes(tmp_path):
    row = faults.fault_kill9_audit(tmp_path, rounds=4, seed=13)
    _survived(row)


def test_kill9_during_signoff(tmp_path):
    row = faults.fault_kill9_signoff(tmp_path, rounds=4, seed=13)
    _survived(row)


@pytest.mark.slow
def test_kill9_during_ingest(tmp_path):
    row = faults.fault_kill9_ingest(tmp_path, seed=13)
    _survived(row)


@pytest.mark.slow
def test_chroma_server_down(tmp_path):
    if faults.shutil.which("chroma") is None and not faults.Path(faults.sys.executable).with_name("chroma").exists():
        pytest.skip("the chroma command (chromadb) is not installed")
    row = faults.fault_chroma_down(tmp_path)
    _survived(row)
    assert row["clear_errors"] == 3


@pytest.mark.slow
def test_llm_server_killed_mid_turn(tmp_path, qwen_path):  # noqa: F811
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] not installed")
    row = faults.fault_llm_killed(tmp_path, model=qwen_path)
    _survived(row)
    assert "dropped the connection" in row["notes"] or "not reachable" in row["notes"]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["worker_segv", "worker_oom", "worker_hang"])
def test_the_model_worker_struck_mid_answer(tmp_path, qwen_path, fault):  # noqa: F811
    row = faults.fault_worker(tmp_path, fault, model=qwen_path)
    _survived(row)
    assert row["clear_errors"] == 1 and "streamed" in row["notes"]


@pytest.mark.slow
def test_the_ui_outlives_its_model_worker(tmp_path, qwen_path):  # noqa: F811
    row = faults.fault_worker_ui(tmp_path, model=qwen_path)
    assert row["unexpected"] == [] and "UI up" in row["notes"], json.dumps(row, indent=1)


def test_table_and_rows_for_the_bench():
    rows = [faults.Row("readonly", "bind", commands=3, expected_errors=2, clear_errors=2, verify_ok=True).to_dict(),
            faults.Row("disk_full", "tmpfs", commands=2, expected_errors=1, clear_errors=0, verify_ok=True,
                       unexpected=["unclear error: x"]).to_dict()]
    assert [r["survived"] for r in rows] == [True, False] and all(r["suite"] == "faults" for r in rows)
    table = faults.format_table(rows)
    assert "faults tried: 2, survived: 1" in table and "| readonly | bind | 3 | 2 / 2 |" in table
    with pytest.raises(SystemExit):
        faults.run(faults.argparse.Namespace(only="nonsense"))
