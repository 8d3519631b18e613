"""The keyed audit log: every forgery the unkeyed SHA-256 chain let through is now detected.

An "attacker" here can write the data directory (the log) but cannot read the integrity key; the
tests at the end show, on purpose, what a holder of the key (or of write access to the key's
directory) can still do, as the README says.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import secrets
import shutil
import threading

import pytest

from agent.audit import GENESIS_HASH, AuditError, AuditLog, text_hash
from agent.integrity import IntegrityKey, canonical
from tools.errors import InputError


def _audit(settings) -> AuditLog:
    return AuditLog.from_settings(settings)


def _log(settings, n=4) -> AuditLog:
    log = _audit(settings)
    for i in range(n):
        log.append("answer", user="dr_a", case_id=f"case-{i}", model_versions={"llm": "q1"},
                   evidence_ids=["E1", "E2"], details={"question_sha256": text_hash(f"q{i}")})
    return log


def _lines(settings) -> list[dict]:
    return [json.loads(x) for x in settings.audit_log_path.read_text().splitlines()]


def _rewrite(path, lines):
    path.write_text("".join(json.dumps(x, sort_keys=True, separators=(",", ":")) + "\n" for x in lines))


def _attacker_mac(rec: dict, key: bytes | None = None) -> str:
    """What someone without the key can compute: SHA-256 of the body, or an HMAC under a guessed key."""
    body = canonical({k: v for k, v in rec.items() if k != "mac"})
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.new(key, b"audit\x00" + body, hashlib.sha256).hexdigest()


def _rechain(lines: list[dict], start: int, key: bytes | None) -> None:
    """Recompute prev_mac and mac of every record from ``start`` on, as an attacker would."""
    for i in range(start, len(lines)):
        lines[i]["prev_mac"] = lines[i - 1]["mac"] if i else GENESIS_HASH
        lines[i]["mac"] = _attacker_mac(lines[i], key)


def _verify(settings):
    return _audit(settings).verify()


def test_chain_verifies_and_links(settings):
    log = _log(settings)
    recs = log.records()
    assert [r["seq"] for r in recs] == [1, 2, 3, 4]
    assert recs[0]["prev_mac"] == GENESIS_HASH
    assert all(recs[i]["prev_mac"] == recs[i - 1]["mac"] for i in range(1, 4))
    rep = _verify(settings)
    assert rep.ok and rep.records == 4 and not rep.problems and not rep.warnings
    assert rep.head["anchor_records"] == 4


def test_key_kept_apart_private_and_not_in_the_log(settings):
    _log(settings, 1)
    key_file = settings.integrity_key_file
    assert key_file.parent != settings.audit_log_path.parent
    assert key_file.stat().st_mode & 0o777 == 0o600 and key_file.parent.stat().st_mode & 0o777 == 0o700
    key_hex = key_file.read_text().strip()
    assert len(bytes.fromhex(key_hex)) == 32 and key_hex not in settings.audit_log_path.read_text()


def test_no_question_text_in_log(settings):
    log = _audit(settings)
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
    lines = _lines(settings)
    lines[1]["user"] = "mallory"
    _rewrite(settings.audit_log_path, lines)
    rep = _verify(settings)
    assert not rep.ok and any("MAC" in p for p in rep.problems)


@pytest.mark.parametrize("guess", [None, "random-key"])
def test_forged_append_with_recomputed_hashes_detected(settings, guess):
    """The old attack: append a record whose hash fields are recomputed. Without the key, neither a
    plain SHA-256 nor an HMAC under a guessed key matches."""
    _log(settings, 3)
    lines = _lines(settings)
    forged = {**lines[-1], "seq": 4, "action": "sign", "user": "mallory", "prev_mac": lines[-1]["mac"]}
    forged["mac"] = _attacker_mac(forged, None if guess is None else secrets.token_bytes(32))
    lines.append(forged)
    _rewrite(settings.audit_log_path, lines)
    rep = _verify(settings)
    assert not rep.ok and any("seq 4" in p and "MAC" in p for p in rep.problems)
    with pytest.raises(AuditError, match="MAC"):  # and nothing is chained onto the forgery
        _audit(settings).append("login", user="dr_a")


@pytest.mark.parametrize("guess", [None, "random-key"])
def test_edit_middle_and_rechain_everything_after_detected(settings, guess):
    _log(settings, 5)
    lines = _lines(settings)
    lines[1]["user"] = "mallory"
    _rechain(lines, 1, None if guess is None else secrets.token_bytes(32))
    _rewrite(settings.audit_log_path, lines)
    rep = _verify(settings)
    assert not rep.ok
    assert sum("MAC" in p for p in rep.problems) == 4  # records 2-5
    assert any("not the one the anchor remembers" in p for p in rep.problems)


def test_delete_log_and_old_head_detected(settings):
    """The old attack: delete the log and its head file; this used to verify as 'OK: 0 records'."""
    _log(settings, 3)
    settings.audit_log_path.unlink()
    settings.audit_log_path.with_name("audit.jsonl.head").unlink(missing_ok=True)
    rep = _verify(settings)
    assert not rep.ok and any("missing or empty, but 3 records existed" in p for p in rep.problems)


def test_empty_log_after_records_detected_and_append_refused(settings):
    _log(settings, 3)
    settings.audit_log_path.write_bytes(b"")
    rep = _verify(settings)
    assert not rep.ok and any("3 records existed" in p for p in rep.problems)
    with pytest.raises(AuditError, match="3 records existed"):
        _audit(settings).append("login", user="dr_a")
    assert settings.audit_log_path.read_bytes() == b""  # fail closed: nothing written


def test_delete_middle_detected(settings):
    _log(settings)
    lines = settings.audit_log_path.read_text().splitlines(keepends=True)
    settings.audit_log_path.write_text("".join(lines[:1] + lines[2:]))
    assert not _verify(settings).ok


def test_delete_last_detected_by_anchor(settings):
    _log(settings)
    lines = settings.audit_log_path.read_text().splitlines(keepends=True)
    settings.audit_log_path.write_text("".join(lines[:-1]))
    rep = _verify(settings)
    assert not rep.ok and any("4 records existed" in p for p in rep.problems)
    with pytest.raises(AuditError, match="deleted"):
        _audit(settings).append("login", user="dr_a")


def test_insert_and_reorder_detected(settings):
    _log(settings)
    lines = settings.audit_log_path.read_text().splitlines(keepends=True)
    settings.audit_log_path.write_text("".join(lines[:2] + [lines[1]] + lines[2:]))
    assert not _verify(settings).ok
    settings.audit_log_path.write_text("".join([lines[1], lines[0]] + lines[2:]))
    assert not _verify(settings).ok


def test_garbage_line_detected(settings):
    _log(settings, 2)
    with settings.audit_log_path.open("a") as fh:
        fh.write("{not json\n")
    rep = _verify(settings)
    assert not rep.ok and any("not valid JSON" in p for p in rep.problems)


def test_anchor_edit_delete_and_key_loss_detected(settings):
    _log(settings, 3)
    key = IntegrityKey(settings.integrity_key_file)
    anchor = json.loads(key.anchor_path.read_text())
    anchor["chains"]["audit"]["records"] = 1
    key.anchor_path.write_text(json.dumps(anchor))
    rep = _verify(settings)
    assert not rep.ok and any("anchor" in p and "does not match the key" in p for p in rep.problems)
    key.anchor_path.unlink()
    rep = _verify(settings)
    assert not rep.ok and any("anchor" in p and "missing" in p for p in rep.problems)
    with pytest.raises(AuditError, match="anchor"):
        _audit(settings).append("login", user="dr_a")


def test_deleted_key_is_reported_never_replaced(settings):
    _log(settings, 2)
    settings.integrity_key_file.unlink()
    rep = _verify(settings)
    assert not rep.ok and any("key" in p and "missing" in p for p in rep.problems)
    with pytest.raises(AuditError, match="restore the key"):
        _audit(settings).append("login", user="dr_a")
    assert not settings.integrity_key_file.exists()


def test_empty_installation_verifies(settings):
    rep = _verify(settings)
    assert rep.ok and rep.records == 0
    assert not settings.data_dir.exists()  # verify writes nothing: no key, no lock file


def test_verify_writes_nothing(settings):
    _log(settings, 2)
    before = sorted(p.relative_to(settings.data_dir) for p in settings.data_dir.rglob("*"))
    for lock in settings.data_dir.rglob("*.lock"):
        lock.unlink()
    assert _verify(settings).ok
    after = sorted(p.relative_to(settings.data_dir) for p in settings.data_dir.rglob("*"))
    assert [p for p in after if p not in before] == []
    assert not list(settings.data_dir.rglob("*.lock"))


def test_concurrent_writers_keep_the_chain(settings):
    def worker(k):
        log = _audit(settings)  # one object per writer, as separate processes would
        for i in range(15):
            log.append("search", user=f"u{k}", case_id=f"c{k}", details={"n": i})

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rep = _verify(settings)
    assert rep.ok, rep.problems
    assert rep.records == 60


def test_record_past_the_anchor_tolerated(settings):
    """A crash between writing the record and updating the anchor leaves a valid record the anchor does
    not count yet: a note, not a failure; the next append counts it."""
    _log(settings, 2)
    key = IntegrityKey(settings.integrity_key_file)
    old_anchor = key.anchor_path.read_bytes()
    _audit(settings).append("login", user="dr_a")
    key.anchor_path.write_bytes(old_anchor)
    rep = _verify(settings)
    assert rep.ok and any("after the anchor" in w for w in rep.warnings)
    _audit(settings).append("logout", user="dr_a")
    rep = _verify(settings)
    assert rep.ok and rep.records == 4 and not rep.warnings


def test_torn_last_record_reported_then_cut_by_next_append(settings):
    _log(settings, 2)
    with settings.audit_log_path.open("ab") as fh:
        fh.write(b'{"seq":3,"time":"2026-')
    rep = _verify(settings)
    assert not rep.ok and any("incomplete last record" in p for p in rep.problems)
    _audit(settings).append("login", user="dr_a")
    rep = _verify(settings)
    assert rep.ok and rep.records == 3


def test_disk_full_leaves_no_partial_record(settings, monkeypatch):
    """Simulated ENOSPC (os.write writes part of the line, then fails): the log is cut back, the error
    is typed, and the chain still verifies."""
    _log(settings, 2)
    size = settings.audit_log_path.stat().st_size
    real_write = os.write
    calls = {"n": 0}

    def full(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(AuditError, match="disk is full"):
        _audit(settings).append("login", user="dr_a")
    monkeypatch.setattr(os, "write", real_write)
    assert settings.audit_log_path.stat().st_size == size
    assert _verify(settings).ok


# --- logs written before the key (migration) ------------------------------------------------------
def _legacy_log(settings, n=3) -> list[dict]:
    """A log as radconsult wrote it before keyed chains: unkeyed SHA-256, plus its .head file."""
    from agent.integrity import legacy_hash

    lines, prev = [], GENESIS_HASH
    for i in range(1, n + 1):
        rec = {"seq": i, "time": "2026-01-01T00:00:00.000+00:00", "action": "answer", "user": None,
               "case_id": f"c{i}", "model_versions": {}, "evidence_ids": [], "details": {}, "prev_hash": prev}
        rec["hash"] = legacy_hash(rec)
        prev = rec["hash"]
        lines.append(rec)
    settings.audit_log_path.parent.mkdir(parents=True, exist_ok=True)
    _rewrite(settings.audit_log_path, lines)
    settings.audit_log_path.with_name("audit.jsonl.head").write_text(json.dumps({"records": n, "hash": prev}))
    return lines


def test_legacy_log_reported_then_sealed(settings):
    _legacy_log(settings)
    rep = _verify(settings)
    assert rep.ok and rep.records == 3 and any("old unkeyed format" in w for w in rep.warnings)
    rec = _audit(settings).append("login", user="dr_a")
    assert rec["seq"] == 4 and rec["prev_mac"] == _lines(settings)[2]["hash"]
    rep = _verify(settings)
    assert rep.ok and any("predate the integrity key" in w for w in rep.warnings)
    # once sealed, editing a legacy record (with its SHA-256 chain recomputed) is detected
    from agent.integrity import legacy_hash

    lines = _lines(settings)
    lines[0]["case_id"] = "forged"
    lines[0]["hash"] = legacy_hash(lines[0])
    for i in (1, 2):
        lines[i]["prev_hash"] = lines[i - 1]["hash"]
        lines[i]["hash"] = legacy_hash(lines[i])
    _rewrite(settings.audit_log_path, lines)
    rep = _verify(settings)
    assert not rep.ok and any("chain broken" in p for p in rep.problems)


def test_broken_legacy_log_reported_and_not_sealed(settings):
    lines = _legacy_log(settings)
    lines[1]["user"] = "mallory"
    _rewrite(settings.audit_log_path, lines)
    rep = _verify(settings)
    assert not rep.ok and any("edited" in p for p in rep.problems)
    with pytest.raises(AuditError, match="unkeyed"):
        _audit(settings).append("login", user="dr_a")


# --- what the key protects, and what it does not (the README says the same) -----------------------
def test_holder_of_the_key_can_forge(settings):
    """Not protected: whoever can read the key can forge records, anchor included."""
    from agent.integrity import ChainHead, read_anchor, write_anchor

    _log(settings, 2)
    key = IntegrityKey(settings.integrity_key_file)
    lines = _lines(settings)
    lines[1]["user"] = "mallory"
    lines[1]["mac"] = key.mac("audit", canonical({k: v for k, v in lines[1].items() if k != "mac"}))
    _rewrite(settings.audit_log_path, lines)
    anchor = read_anchor(key)
    write_anchor(key, type(anchor)(anchor.created, {"audit": ChainHead(2, lines[1]["mac"])}))
    assert _verify(settings).ok


def test_rollback_of_log_and_anchor_together_is_not_detected(settings, tmp_path):
    """Not protected: someone who can write the key's directory too can put back an older copy of the
    log and the anchor together. Keep the key directory out of their reach, or note the head that
    `radconsult audit verify --json` prints somewhere they cannot write."""
    _log(settings, 2)
    key = IntegrityKey(settings.integrity_key_file)
    shutil.copy(settings.audit_log_path, tmp_path / "log")
    shutil.copy(key.anchor_path, tmp_path / "anchor")
    _audit(settings).append("sign", user="dr_a")
    shutil.copy(tmp_path / "log", settings.audit_log_path)
    shutil.copy(tmp_path / "anchor", key.anchor_path)
    assert _verify(settings).ok


# --- the command line -----------------------------------------------------------------------------
def test_cli_audit_verify_and_reset(settings, monkeypatch, capsys):
    from agent.cli import main

    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(settings.data_dir))
    _log(settings, 3)
    assert main(["audit", "verify", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["audit"]["records"] == 3 and out["reports"]["ok"] is True
    assert main(["audit", "reset", "--yes"]) == 2  # nothing to reset
    assert "nothing to reset" in capsys.readouterr().err
    lines = settings.audit_log_path.read_text().splitlines(keepends=True)
    settings.audit_log_path.write_text("".join(lines[:1] + lines[2:]))
    assert main(["audit", "verify"]) == 1
    assert "FAILED" in capsys.readouterr().err
    assert main(["audit", "reset"]) == 2  # needs --yes
    assert main(["audit", "reset", "--yes"]) == 0
    archives = list(settings.data_dir.glob("audit.jsonl.broken-*"))
    assert len(archives) == 1 and archives[0].read_text().count("\n") == 2
    capsys.readouterr()
    assert main(["audit", "verify", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    first = _lines(settings)[0]
    assert out["ok"] and first["action"] == "audit_reset" and first["details"]["audit_problems"] >= 1
    assert first["details"]["audit_archive_sha256"] == hashlib.sha256(archives[0].read_bytes()).hexdigest()
