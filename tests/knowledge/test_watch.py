"""`radconsult kb watch DIR`: a real process picks up report files as they arrive (text and a FHIR
Bundle), with the same redaction and keys as `kb ingest`, and a restart ingests nothing twice."""

from __future__ import annotations

import base64
import json
import signal

import pytest

from knowledge.base import KnowledgeBase
from knowledge.config import KnowledgeConfig
from knowledge.store import KnowledgeStore
from tests.knowledge.conftest import REPORT_MD, write
from tests.knowledge.procs import cli_env, start_cli, stop, wait_for
from tools.errors import InputError

NAMED = ("CHEST RADIOGRAPH\nPatient: Horace Slughorn\nMRN: 44771234\n"
         "FINDINGS: Moderate right pleural effusion with basal atelectasis.\n"
         "IMPRESSION: Right effusion, larger than before.\n")


def _bundle() -> str:
    text = "FINDINGS: A 6 mm ground-glass nodule in the right upper lobe.\n"
    report = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "CT chest"},
              "subject": {"reference": "Patient/pid-8812"}, "effectiveDateTime": "2024-09-01",
              "presentedForm": [{"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}]}
    second = {**report, "conclusion": "Stable appearance; no new nodules.", "presentedForm": [],
              "effectiveDateTime": "2025-03-01"}
    return json.dumps({"resourceType": "Bundle", "type": "collection",
                       "entry": [{"resource": report}, {"resource": second}]})


def _rows(store: KnowledgeStore) -> list[dict]:
    return list(store.iter_all("report"))


def test_watch_ingests_arrivals_and_restarts_idempotently(tmp_path, embedder):
    data, inbox = tmp_path / "data", tmp_path / "inbox"
    inbox.mkdir()
    config = KnowledgeConfig.under(data)
    store = KnowledgeStore(config, embedder).open()
    env = cli_env(data, embedder.cache_dir)
    proc = start_cli(["-v", "kb", "watch", str(inbox), "--kind", "report", "--interval", "0.3", "--json"], env)
    try:
        write(inbox / "Horace_Slughorn_cxr.txt", NAMED)
        wait_for(lambda: len({r["metadatas"]["source"] for r in _rows(store)}) >= 1, 240, "the first report")
        write(inbox / "sub" / "bundle.json", _bundle())
        wait_for(lambda: len({r["metadatas"]["source"] for r in _rows(store)}) >= 3, 240, "the Bundle's reports")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 0, err[-2000:]
    batches = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert sum(b["files"] for b in batches) == 2 and not any(b["failed"] for b in batches)

    stored = json.dumps(_rows(store))
    for secret in ("Slughorn", "Horace", "44771234", "pid-8812", str(inbox)):
        assert secret not in stored
    kb = KnowledgeBase(config, store)
    hits = kb.search("ground-glass nodule", kind="report", k=3)
    assert hits and hits[0].study_date == "2024-09-01" and hits[0].patient and hits[0].patient.startswith("P-")
    before = {r["id"] for r in _rows(store)}

    # a restart sees every file again and re-embeds nothing; a new arrival is still picked up
    write(inbox / "later.md", REPORT_MD)
    again = start_cli(["kb", "watch", str(inbox), "--kind", "report", "--interval", "0.3", "--once", "--json"], env)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    (batch,) = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert batch["files"] == 3 and batch["unchanged_files"] == 2 and batch["chunks_removed"] == 0
    after = {r["id"] for r in _rows(store)}
    assert before < after and kb.search("solid nodule", kind="report", patient="DEMO-9001", k=1)


def test_watch_bad_input(tmp_path, kb):
    with pytest.raises(InputError, match="not a directory"):
        kb.watcher(tmp_path / "missing")
    with pytest.raises(InputError, match="interval"):
        kb.watcher(tmp_path, interval=0)


def test_watch_waits_for_files_to_settle_and_for_other_writers(tmp_path, kb):
    """In-process: a file still growing is not read, and a batch waits while another writer holds the lock."""
    watcher = kb.watcher(tmp_path, kind="report", patient="DEMO-7", interval=0.2)
    path = write(tmp_path / "r.txt", "FINDINGS: Small ")
    assert watcher.scan_once() is None  # first sight: not settled yet
    path.write_text("FINDINGS: Small left effusion.\n")
    assert watcher.scan_once() is None  # it changed: still not settled
    with kb.store.writing():  # another writer holds the lock: the settled file waits
        assert watcher.scan_once() is None
    report = watcher.scan_once()
    assert report is not None and report.files == 1 and report.chunks_added == 1
    assert watcher.scan_once() is None  # nothing new
    assert kb.search("effusion", kind="report", patient="DEMO-7", k=1)[0].quote == "Small left effusion."
