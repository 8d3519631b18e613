from __future__ import annotations

import json
import threading

import pytest

from agent.audit import GENESIS_HASH, AuditLog, text_hash, verify
from tools.errors import InputError


def _log(settings, n=4) -> AuditLog:
    log = AuditLog(settings.audit_log_path)
    for i in range(n):
        log.append("answer", user="dr_a", case_id=f"case-{i}", model_versions={"llm": "q1"},
                   evidence_ids=["E1", "E2"], details={"question_sha256": text_hash(f"q{i}")})
    return log


def _rewrite(path, lines):
    path.write_text("".join(json.dumps(x, sort_keys=True, separators=(",", ":")) + "\n" for x in lines))


def test_chain_verifies_and_links(settings):
    log = _log(settings)
    recs = log.records()
    assert [r["seq"] for r in recs] == [1, 2, 3, 4]
    assert recs[0]["prev_hash"] == GENESIS_HASH
    assert all(recs[i]["prev_hash"] == recs[i - 1]["hash"] for i in range(1, 4))
    rep = verify(settings.audit_log_path)
    assert rep.ok and rep.records == 4 and not rep.problems


def test_no_question_text_in_log(settings):
    log = AuditLog(settings.audit_log_path)
    log.append("answer", user="u", details={"question_sha256": text_hash("Is there a nodule in Mr Smith?")})
    assert "Smith" not in settings.audit_log_path.read_text()
    with pytest.raises(InputError):
        log.append("answer", user="u", details={"question": "x" * 500})
    with pytest.raises(InputError):
        log.append("answer", user="u", details={"nested": {"a": 1}})
    with pytest.raises(InputError):
        log.append("not-an-action", user="u")


def test_edit_detected(settings):
    _log(settings)
    lines = [json.loads(x) for x in settings.audit_log_path.read_text().splitlines()]
    lines[1]["user"] = "mallory"
    _rewrite(settings.audit_log_path, lines)
    rep = verify(settings.audit_log_path)
    assert not rep.ok and any("edited" in p for p in rep.problems)


def test_edit_with_rehash_detected_by_chain(settings):
    from agent.audit import record_hash

    _log(settings)
    lines = [json.loads(x) for x in settings.audit_log_path.read_text().splitlines()]
    lines[1]["user"] = "mallory"
    lines[1]["hash"] = record_hash(lines[1])
    _rewrite(settings.audit_log_path, lines)
    rep = verify(settings.audit_log_path)
    assert not rep.ok and any("chain broken" in p for p in rep.problems)


def test_delete_middle_detected(settings):
    _log(settings)
    lines = settings.audit_log_path.read_text().splitlines(keepends=True)
    settings.audit_log_path.write_text("".join(lines[:1] + lines[2:]))
    assert not verify(settings.audit_log_path).ok


def test_delete_last_detected_by_head(settings):
    _log(settings)
    lines = settings.audit_log_path.read_text().splitlines(keepends=True)
    settings.audit_log_path.write_text("".join(lines[:-1]))
    rep = verify(settings.audit_log_path)
    assert not rep.ok and any("head anchor" in p for p in rep.problems)


def test_insert_detected(settings):
    _log(settings)
    lines = settings.audit_log_path.read_text().splitlines(keepends=True)
    settings.audit_log_path.write_text("".join(lines[:2] + [lines[1]] + lines[2:]))
    assert not verify(settings.audit_log_path).ok


def test_garbage_line_detected(settings):
    _log(settings, 2)
    with settings.audit_log_path.open("a") as fh:
        fh.write("{not json\n")
    rep = verify(settings.audit_log_path)
    assert not rep.ok and any("not valid JSON" in p for p in rep.problems)


def test_empty_log_verifies(settings):
    rep = verify(settings.audit_log_path)
    assert rep.ok and rep.records == 0


def test_concurrent_writers_keep_the_chain(settings):
    def worker(k):
        log = AuditLog(settings.audit_log_path)  # one object per writer, as separate processes would
        for i in range(15):
            log.append("search", user=f"u{k}", case_id=f"c{k}", details={"n": i})

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rep = verify(settings.audit_log_path)
    assert rep.ok, rep.problems
    assert rep.records == 60


def test_cli_audit_verify(settings, monkeypatch, capsys):
    from agent.cli import main

    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(settings.data_dir))
    _log(settings, 3)
    assert main(["audit", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    lines = settings.audit_log_path.read_text().splitlines(keepends=True)
    settings.audit_log_path.write_text("".join(lines[:1] + lines[2:]))
    assert main(["audit", "verify"]) == 1
