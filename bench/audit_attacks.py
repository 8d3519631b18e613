"""The forgeries of issue 13 (item 2) against the audit log and signed summaries: which are detected.

    python bench/audit_attacks.py                      # this checkout
    git archive add9b72 | tar -x -C /tmp/old && PYTHONPATH=/tmp/old python bench/audit_attacks.py   # before

Each attack is what someone who can write the data directory (but cannot read the integrity key) can do.
Prints one row per attack and the count detected; exit 1 when any goes unnoticed. Works against the
code before keyed integrity too (it then uses that code's own API), to show the difference.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # run as a script: bench/agent.py would shadow the agent package

import agent.audit as A  # noqa: E402
import agent.signoff as S  # noqa: E402
from agent.settings import Settings  # noqa: E402

KEYED = hasattr(A.AuditLog, "from_settings")


def _audit(st: Settings):  # noqa: ANN202 - AuditLog of either version
    return A.AuditLog.from_settings(st) if KEYED else A.AuditLog(st.audit_log_path)


def _audit_ok(st: Settings) -> bool:
    return _audit(st).verify().ok if KEYED else A.verify(st.audit_log_path).ok


def _store(st: Settings):  # noqa: ANN202 - ReportStore of either version
    return S.ReportStore.from_settings(st) if KEYED else S.ReportStore(st.data_dir / "reports")


def _report(impression: str = "No pneumothorax [E1].") -> S.Report:
    return S.Report(case_id="case-1", sections=(("Impression", impression),))


def _fill(st: Settings, n: int = 4) -> list[dict]:
    for i in range(n):
        _audit(st).append("answer", user="dr_a", case_id=f"c{i}")
    return [json.loads(x) for x in st.audit_log_path.read_text().splitlines()]


def _write(st: Settings, lines: list[dict]) -> None:
    st.audit_log_path.write_text("".join(json.dumps(x, sort_keys=True, separators=(",", ":")) + "\n" for x in lines))


def _rechain(st: Settings, lines: list[dict], start: int) -> None:
    """Recompute the chain from ``start`` as an attacker can: SHA-256, no key."""
    own, prev = ("mac", "prev_mac") if "mac" in lines[0] else ("hash", "prev_hash")
    for i in range(start, len(lines)):
        lines[i][prev] = lines[i - 1][own] if i else "0" * 64
        body = {k: v for k, v in lines[i].items() if k != own}
        lines[i][own] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                                  ensure_ascii=False).encode()).hexdigest()
    head = st.audit_log_path.with_name("audit.jsonl.head")
    if head.exists():
        head.write_text(json.dumps({"records": len(lines), "hash": lines[-1][own]}))
    _write(st, lines)


def _file(st: Settings, v: int = 1) -> Path:
    return st.data_dir / "reports" / "case-1" / f"v{v:04d}.json"


def _tamper(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    os.chmod(path, 0o600)
    path.write_text(json.dumps(data))


def _signed(st: Settings):  # noqa: ANN202
    store = _store(st)
    store.save_draft(_report())
    store.sign("case-1", 1, user="dr_a")
    return store


def _store_ok(st: Settings, version: int = 1) -> bool:
    try:
        _store(st).load("case-1", version)
    except Exception:  # noqa: BLE001 - any refusal counts as detection
        return False
    return _store(st).verify().ok if KEYED else True


def forged_append(st: Settings) -> bool:
    lines = _fill(st)
    lines.append({**lines[-1], "seq": 5, "action": "sign", "user": "mallory"})
    _rechain(st, lines, 4)
    return _audit_ok(st)


def middle_edit_rechained(st: Settings) -> bool:
    lines = _fill(st)
    lines[1]["user"] = "mallory"
    _rechain(st, lines, 1)
    return _audit_ok(st)


def log_and_head_deleted(st: Settings) -> bool:
    _fill(st)
    st.audit_log_path.unlink()
    st.audit_log_path.with_name("audit.jsonl.head").unlink(missing_ok=True)
    return _audit_ok(st)


def signer_changed(st: Settings) -> bool:
    _signed(st)
    _tamper(_file(st), lambda d: d.__setitem__("signed_by", "dr_mallory"))
    return _store_ok(st)


def content_edited_hash_recomputed(st: Settings) -> bool:
    _signed(st)

    def edit(d: dict) -> None:
        d["report"]["sections"][0][1] = "No follow-up needed."
        d["content_hash"] = S.Report.from_dict(d["report"]).content_hash()

    _tamper(_file(st), edit)
    return _store_ok(st)


def flipped_to_draft_then_overwritten(st: Settings) -> bool:
    store = _signed(st)
    _tamper(_file(st), lambda d: d.update(status="draft", signed_by=None, signed_at=None, content_hash=None))
    try:
        store.save_draft(_report("Overwritten."))
    except Exception:  # noqa: BLE001 - refused: detected
        return False
    return "Overwritten." in _file(st).read_text()


def signed_version_deleted(st: Settings) -> bool:
    store = _signed(st)
    store.edit("case-1", 1, _report("Amended."))
    store.sign("case-1", 2, user="dr_b")
    _file(st, 2).unlink()
    try:
        latest = _store(st).load("case-1")
    except Exception:  # noqa: BLE001
        return False
    return latest.version == 1 and (_store(st).verify().ok if KEYED else True)


ATTACKS: dict[str, Callable[[Settings], bool]] = {
    "audit: forged record appended, hashes recomputed": forged_append,
    "audit: middle record edited, chain recomputed": middle_edit_rechained,
    "audit: log and head file deleted": log_and_head_deleted,
    "summary: signed_by changed": signer_changed,
    "summary: content edited, content hash recomputed": content_edited_hash_recomputed,
    "summary: signed v1 flipped to draft, next save overwrites it": flipped_to_draft_then_overwritten,
    "summary: newest signed version deleted": signed_version_deleted,
}


def main() -> int:
    print(f"code under test: {'keyed integrity' if KEYED else 'unkeyed (before keyed integrity)'}")
    print("| attack | result |\n| --- | --- |")
    detected = 0
    for name, attack in ATTACKS.items():
        with tempfile.TemporaryDirectory(prefix="radconsult-attack-") as tmp:
            unnoticed = attack(Settings(data_dir=Path(tmp) / "data"))
        detected += not unnoticed
        print(f"| {name} | {'UNNOTICED' if unnoticed else 'detected'} |")
    print(f"\nattacks tried: {len(ATTACKS)}, detected: {detected}")
    return 0 if detected == len(ATTACKS) else 1


if __name__ == "__main__":
    sys.exit(main())
