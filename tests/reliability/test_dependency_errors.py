"""Dependency failures through real `radconsult` processes: each ends in one `radconsult: error:` line that
says what to do, exit 2, and no traceback (issue 13, item 7).

The read-only data directory is made read-only in the way that works here, chosen once per run:

- as root with mount rights: each command runs in its own mount namespace (``unshare -m``) where the
  data directory is a read-only bind mount of itself (chmod would not stop root);
- not root: ``chmod a-w`` on every directory of the data directory;
- root without mount rights: the fresh-directory cases are simulated with a data directory under a
  regular file (it cannot be created); the used-installation cases are skipped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bench.reliability_faults import (
    PASSWORD,
    Box,
    Result,
    can_mount,
    prepare,
    readonly_prefix,
    sample_dicom,
)

_MOUNT = can_mount()
_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _assert_clear(res: Result, *words: str) -> None:
    assert "Traceback" not in res.err, res.err[-2000:]
    assert res.clear_error(), res.short() + "\n" + res.err[-1500:]
    line = res.error_line().lower()
    for w in words:
        assert w.lower() in line, (w, line)


def _chmod(path: Path, mode: int) -> None:
    for p in [path, *path.rglob("*")]:
        if p.is_dir():
            p.chmod(mode)


def _run_readonly(box: Box, *args: str, stdin: str | None = None, timeout: float = 300) -> Result:
    if _MOUNT:
        return box.run(*args, stdin=stdin, timeout=timeout, prefix=readonly_prefix(box.data))
    if _ROOT:
        pytest.skip("root without mount rights: chmod would not make the data directory read-only")
    _chmod(box.data, 0o555)
    try:
        return box.run(*args, stdin=stdin, timeout=timeout)
    finally:
        _chmod(box.data, 0o755)


# --- a dead LLM server ------------------------------------------------------------------------------
def test_dead_llm_server(tmp_path):
    box = Box(tmp_path, RADCONSULT_LLM="openai:http://127.0.0.1:9#x", RADCONSULT_LLM_TIMEOUT_S="10")
    # a question the model must read (a BI-RADS meaning is answered from the table without it)
    res = box.run("ask", "How are pulmonary nodules measured on CT?", "--case", "c1")
    _assert_clear(res, "not reachable", "RADCONSULT_LLM")
    assert "I could not complete" not in res.out
    as_json = box.run("ask", "How are pulmonary nodules measured on CT?", "--case", "c1", "--json")
    _assert_clear(as_json, "not reachable")
    import json

    assert "not reachable" in json.loads(as_json.out)["error"]
    assert box.verify()["ok"]  # both failed turns are audited, the chain intact


# --- a damaged Chroma store -------------------------------------------------------------------------
def _damaged_store(box: Box, how: str) -> None:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    kb = box.data / "kb"
    client = chromadb.PersistentClient(path=str(kb), settings=ChromaSettings(anonymized_telemetry=False))
    client.get_or_create_collection("probe", embedding_function=None)
    del client
    db = kb / "chroma.sqlite3"
    data = bytearray(db.read_bytes())
    if how == "header":
        data[:100] = b"X" * 100
    else:
        for off in range(4096, len(data), 4096 * 2):
            data[off:off + 600] = b"\xde\xad" * 300
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["header", "pages"])
def test_damaged_chroma_store_says_rebuild_and_what_is_lost(tmp_path, how):
    box = Box(tmp_path)
    _damaged_store(box, how)
    res = box.run("kb", "stats")
    _assert_clear(res, "kb build --rebuild", "ingested again")


def test_kb_build_rebuild_refuses_a_server(tmp_path):
    res = Box(tmp_path, RADCONSULT_CHROMA_URL="http://127.0.0.1:9").run("kb", "build", "--rebuild")
    _assert_clear(res, "embedded store only")


# --- a read-only data directory ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def used(tmp_path_factory) -> Box:
    """An installation in use: a user, the secret, a signed summary, a case with one (failed) turn."""
    box = Box(tmp_path_factory.mktemp("used"))
    prepare(box)
    (box.root / "note.md").write_text("---\ntitle: Note\nkind: guideline\n---\n# Note\n\nShort.\n")
    return box


READ_ONLY_WORKS = [["audit", "verify"], ["users", "list"], ["config"], ["models", "list"]]
READ_ONLY_FAILS = [
    (["users", "add", "bob", "--password-stdin"], ("nothing was changed", "writable")),
    (["users", "remove", "alice"], ("nothing was changed", "writable")),
    (["ask", "What does BI-RADS 4 mean?", "--case", "c1"], ("case database", "writable")),
    (["kb", "stats"], ("knowledge base", "writable")),
    (["kb", "search", "nodule"], ("knowledge base", "writable")),
    (["kb", "build"], ("knowledge base", "writable")),
    (["kb", "build", "--rebuild"], ("writable",)),
    (["kb", "delete", "--source", "x"], ("knowledge base", "writable")),
]


@pytest.mark.parametrize("args", READ_ONLY_WORKS, ids=" ".join)
def test_readonly_reading_commands_work(used, args):
    res = _run_readonly(used, *args)
    assert res.rc == 0 and "Traceback" not in res.err, res.short()


def test_readonly_inspect_and_deid_with_an_existing_secret(used, tmp_path):
    assert _run_readonly(used, "inspect", str(sample_dicom())).rc == 0
    res = _run_readonly(used, "deid", str(sample_dicom()), str(tmp_path / "out"))
    assert res.rc == 0, res.short()


@pytest.mark.parametrize(("args", "words"), READ_ONLY_FAILS, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_readonly_writing_commands_fail_clearly(used, args, words):
    before = used.verify()
    res = _run_readonly(used, *args, stdin=PASSWORD + "\n" if "--password-stdin" in args else None)
    _assert_clear(res, *words)
    after = used.verify()
    assert after["ok"] and after["audit"]["records"] == before["audit"]["records"]


def test_readonly_kb_ingest_and_ui(used):
    _assert_clear(_run_readonly(used, "kb", "ingest", str(used.root / "note.md"), "--no-progress"), "writable")
    res = _run_readonly(used, "ui", "--port", "1", timeout=240)
    _assert_clear(res, "writable")


def test_audit_verify_creates_no_lock_file(used):
    for lock in used.data.rglob("*.lock"):
        lock.unlink()
    res = _run_readonly(used, "audit", "verify")
    assert res.rc == 0 and "OK" in res.out, res.short()
    assert not list(used.data.rglob("*.lock"))


@pytest.fixture
def fresh(tmp_path) -> tuple[Box, str]:
    """A read-only data directory that was never used (method named for the test report)."""
    if _MOUNT or not _ROOT:
        box = Box(tmp_path)
        box.data.mkdir()
        return box, "read-only"
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return Box(tmp_path, data=blocker / "data"), "under a regular file (simulated)"


def test_fresh_readonly_inspect_cannot_create_the_secret(fresh):
    box, _ = fresh
    _assert_clear(_run_readonly(box, "inspect", str(sample_dicom())) if box.data.is_dir()
                  else box.run("inspect", str(sample_dicom())), "secret", "RADCONSULT_DATA_DIR")


def test_fresh_readonly_deid_names_the_secret_not_the_file(fresh, tmp_path):
    box, _ = fresh
    args = ("deid", str(sample_dicom()), str(tmp_path / "out"))
    res = _run_readonly(box, *args) if box.data.is_dir() else box.run(*args)
    _assert_clear(res, "secret")
    assert "malformed" not in res.err


def test_fresh_readonly_users_add_and_verify(fresh):
    box, _ = fresh
    run = (lambda *a, **k: _run_readonly(box, *a, **k)) if box.data.is_dir() else box.run
    _assert_clear(run("users", "add", "bob", "--password-stdin", stdin=PASSWORD + "\n"), "writable")
    res = run("audit", "verify")
    assert res.rc == 0 and "0 records" in res.out, res.short()


def test_readonly_runner_really_is_readonly(used):
    """The technique itself: a write inside the read-only view fails even for root."""
    if not _MOUNT:
        pytest.skip("needs mount rights")
    probe = used.data / "probe"
    res = used.run("config", prefix=readonly_prefix(used.data))  # the prefix runs fine
    assert res.rc == 0
    import subprocess

    touch = subprocess.run([*readonly_prefix(used.data), shutil.which("touch") or "touch", str(probe)],
                           capture_output=True, text=True)
    assert touch.returncode != 0 and "Read-only" in touch.stderr and not probe.exists()
