"""The store: start-up errors, the single-writer lock, and server mode against a real `chroma run`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from knowledge.base import KnowledgeBase
from knowledge.config import KnowledgeConfig
from knowledge.store import KnowledgeStore, collection_name
from tools.errors import StoreError


def test_data_dir_that_is_a_file(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the knowledge base directory"):
        KnowledgeStore(KnowledgeConfig.under(blocker)).open()


def test_kb_path_that_is_a_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "kb").write_text("oops")
    with pytest.raises(StoreError):
        KnowledgeStore(KnowledgeConfig.under(tmp_path / "data")).open()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory(tmp_path):
    kb_dir = tmp_path / "data" / "kb"
    kb_dir.mkdir(parents=True)
    kb_dir.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="not writable"):
            KnowledgeStore(KnowledgeConfig.under(tmp_path / "data")).open()
    finally:
        kb_dir.chmod(0o755)


def test_unknown_kind():
    with pytest.raises(StoreError, match="unknown knowledge kind"):
        collection_name("images")


def test_lock_is_released_and_exclusive(kcfg, embedder):
    store = KnowledgeStore(kcfg, embedder)
    with store.writing(), pytest.raises(StoreError, match="pid"), KnowledgeStore(kcfg, embedder).writing():
        pass
    with store.writing():  # released after the first holder left
        pass


def test_bad_server_url(tmp_path):
    with pytest.raises(StoreError, match="http://host:port"):
        KnowledgeStore(KnowledgeConfig.under(tmp_path, chroma_url="ftp://x")).open()
    with pytest.raises(StoreError, match="cannot reach the Chroma server"):
        KnowledgeStore(KnowledgeConfig.under(tmp_path, chroma_url=f"http://127.0.0.1:{_free_port()}")).open()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path):
    exe = Path(sys.executable).parent / "chroma"
    if not exe.exists():
        exe = Path(shutil.which("chroma") or "")
    if not exe.is_file():
        pytest.skip("the `chroma` command (pip install chromadb) is not installed")
    port = _free_port()
    proc = subprocess.Popen([str(exe), "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                pytest.fail("chroma run exited at start-up")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_server_mode(chroma_server, tmp_path, embedder, docs):
    config = KnowledgeConfig.under(tmp_path / "data", chroma_url=chroma_server)
    kb = KnowledgeBase(config, KnowledgeStore(config, embedder)).open()
    report = kb.ingest([docs["effusion"], docs["report"]])
    assert report.chunks_added > 0 and not report.failed
    assert not (tmp_path / "data" / "kb").exists()  # nothing embedded on disk in server mode
    hit = kb.search("how much fluid blunts the costophrenic angle", k=1)[0]
    assert "200 to 300 mL" in hit.quote and hit.organisation == "Test Society"
    reports = kb.search("nodule", kind="report", patient="DEMO-9001", k=3)
    assert reports and all(c.patient == "DEMO-9001" for c in reports)
    stats = kb.stats()
    assert stats["mode"] == "server" and stats["collections"]["report"]["patients"] == 1
    assert kb.ingest([docs["effusion"]]).chunks_added == 0  # idempotent on the server too
    assert kb.delete(str(docs["effusion"])) > 0


def test_unusable_data_dir_fails_at_start_up(tmp_path):
    """Runs as root too (unlike the permission test): the data dir is a file, so nothing can be created."""
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the knowledge base directory"):
        KnowledgeStore(KnowledgeConfig.under(blocker)).open()
    assert blocker.read_text() == "not a directory"  # nothing lost
