from __future__ import annotations

import json
import os
import shutil

import pytest

from agent.signoff import EvidenceRef, Report, ReportStore, SignoffError, StudyRef
from tools.errors import InputError


def make_report(case_id="case-1", impression="No pneumothorax [E1].") -> Report:
    return Report(
        case_id=case_id, patient_key="PK-abc123",
        sections=(("Findings", "Lungs clear [E1]."), ("Impression", impression),
                  ("Recommendations", "Follow guideline [E2].")),
        evidence=(EvidenceRef(id="E1", kind="classifier", title="pneumothorax", model="ptx-densenet",
                              model_version="1.0", probability=0.08, caution="Not for triage."),
                  EvidenceRef(id="E2", kind="knowledge", title="BTS", source="BTS pleural guideline",
                              section="Management", quote="Observe small pneumothoraces.")),
        models=({"name": "ptx-densenet", "version": "1.0", "intended_use": "Adult frontal CXR."},),
        study=StudyRef(study_uid="2.25.1", series_uid="2.25.2", sop_instance_uids=("2.25.3",),
                       sop_class_uid="1.2.840.10008.5.1.4.1.1.1", modality="CR"),
    )


@pytest.fixture
def store(settings):
    return ReportStore.from_settings(settings)


def test_round_trip_and_hash(store):
    r = make_report()
    assert Report.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert r.content_hash() == make_report().content_hash()
    assert r.content_hash() != make_report(impression="Different.").content_hash()


def test_draft_replaced_until_signed(store):
    v1 = store.save_draft(make_report(), user="dr_a")
    assert v1.version == 1 and v1.status == "draft" and v1.signed_by is None
    v1b = store.save_draft(make_report(impression="Edited [E1]."), user="dr_a")
    assert v1b.version == 1 and store.versions("case-1") == [1]
    signed = store.sign("case-1", 1, user="dr_a")
    assert signed.is_signed and signed.signed_by == "dr_a" and signed.signed_at
    assert signed.content_hash == make_report(impression="Edited [E1].").content_hash()
    assert store.load("case-1").is_signed


def test_signed_is_immutable(store):
    store.save_draft(make_report())
    store.sign("case-1", 1, user="dr_a")
    with pytest.raises(SignoffError, match="already signed"):
        store.sign("case-1", 1, user="dr_b")
    v2 = store.edit("case-1", 1, make_report(impression="Amended [E1]."), user="dr_b")
    assert v2.version == 2 and v2.supersedes == 1 and not v2.is_signed
    old = store.load("case-1", 1)
    assert old.is_signed and "Amended" not in json.dumps(old.to_dict())
    # a new draft after signing also makes a new version, never touches v1
    v3 = store.save_draft(make_report(impression="Again."))
    assert v3.version == 2
    store.sign("case-1", 2, user="dr_b")
    assert store.save_draft(make_report()).version == 3


def _signed(store):
    store.save_draft(make_report())
    store.sign("case-1", 1, user="dr_a")


def _file(settings, version=1, case="case-1"):
    return settings.reports_dir / case / f"v{version:04d}.json"


def _tamper(path, change):
    data = json.loads(path.read_text())
    change(data)
    os.chmod(path, 0o600)
    path.write_text(json.dumps(data, indent=2))


def _problems(store):
    rep = store.verify()
    assert not rep.ok
    return " | ".join(rep.problems)


def test_tampered_signed_file_detected(store, settings):
    _signed(store)
    _tamper(_file(settings), lambda d: d["report"]["sections"][1].__setitem__(1, "Tension pneumothorax."))
    with pytest.raises(SignoffError, match="altered"):
        store.load("case-1", 1)
    assert "altered" in _problems(store)


def test_signer_is_covered(store, settings):
    """Old gap: signed_by was outside the hash, so changing the signer went unnoticed."""
    _signed(store)
    _tamper(_file(settings), lambda d: d.__setitem__("signed_by", "dr_mallory"))
    with pytest.raises(SignoffError, match="altered"):
        store.load("case-1", 1)
    assert "altered" in _problems(store)


def test_content_edit_with_recomputed_hash_detected(store, settings):
    """Old gap: edit the content and recompute content_hash; it loaded as a valid signed summary."""
    _signed(store)

    def edit(d):
        d["report"]["sections"][1][1] = "No follow-up needed."
        d["content_hash"] = Report.from_dict(d["report"]).content_hash()

    _tamper(_file(settings), edit)
    with pytest.raises(SignoffError, match="altered"):
        store.load("case-1", 1)
    assert "altered" in _problems(store)


@pytest.mark.parametrize("how", ["flip", "replay"])
def test_signed_rolled_back_to_draft_is_never_overwritten(store, settings, how):
    """Old gap: set status back to draft and the next save overwrote v1. ``flip`` edits the file;
    ``replay`` puts back an authentic, sealed copy of the draft taken before signing."""
    store.save_draft(make_report())
    draft_copy = _file(settings).read_bytes()
    store.sign("case-1", 1, user="dr_a")
    signed_bytes = _file(settings).read_bytes()
    if how == "flip":
        _tamper(_file(settings), lambda d: d.update(status="draft", signed_by=None, signed_at=None,
                                                    content_hash=None))
    else:
        os.chmod(_file(settings), 0o600)
        _file(settings).write_bytes(draft_copy)
    tampered = _file(settings).read_bytes()
    with pytest.raises(SignoffError):
        store.load("case-1", 1)
    with pytest.raises(SignoffError):
        store.save_draft(make_report(impression="Overwrite attempt."))
    with pytest.raises(SignoffError):
        store.edit("case-1", 1, make_report(impression="Overwrite attempt."))
    assert _file(settings).read_bytes() == tampered and store._file_versions("case-1") == [1]
    assert ("altered" if how == "flip" else "rolled back") in _problems(store)
    os.chmod(_file(settings), 0o600)
    _file(settings).write_bytes(signed_bytes)  # restored from a backup: all is well again
    assert store.verify().ok and store.load("case-1", 1).is_signed


def test_deleted_signed_version_detected(store, settings):
    """Old gap: deleting a signed version went unnoticed (the previous version became the newest)."""
    _signed(store)
    store.edit("case-1", 1, make_report(impression="Amended [E1]."), user="dr_b")
    store.sign("case-1", 2, user="dr_b")
    _file(settings, 2).unlink()
    assert "v2 of case 'case-1' (signed by dr_b" in _problems(store)
    with pytest.raises(SignoffError, match="missing"):
        store.load("case-1")
    with pytest.raises(SignoffError, match="missing"):
        store.save_draft(make_report(impression="New draft."))
    shutil.rmtree(settings.reports_dir / "case-1")
    problems = _problems(store)
    assert "v1 of case 'case-1'" in problems and "v2 of case 'case-1'" in problems


def test_ledger_deleted_or_truncated_detected(store, settings):
    _signed(store)
    ledger = settings.reports_dir / ".signatures.jsonl"
    ledger.write_text("")
    assert "signature ledger" in _problems(store)
    with pytest.raises(SignoffError, match="ledger"):
        store.save_draft(make_report(case_id="case-2"))
    ledger.unlink()
    assert "1 records existed" in _problems(store)


def test_file_moved_to_another_case_detected(store, settings):
    _signed(store)
    (settings.reports_dir / "case-9").mkdir()
    shutil.copy(_file(settings), _file(settings, case="case-9"))
    with pytest.raises(SignoffError, match="moved or copied"):
        store.load("case-9", 1)
    assert "moved or copied" in _problems(store)


def test_interrupted_signoff_recorded_by_next_change(store, settings, monkeypatch):
    """A crash after the signed file is written but before the ledger entry: the sealed file proves it
    was signed here; verify notes it and the next change to the case records it."""
    store.save_draft(make_report())
    monkeypatch.setattr(ReportStore, "_record_signature", lambda self, rv, seal: None)
    store.sign("case-1", 1, user="dr_a")
    monkeypatch.undo()
    rep = store.verify()
    assert rep.ok and any("interrupted sign-off" in w for w in rep.warnings)
    store.save_draft(make_report(impression="Next."))
    rep = store.verify()
    assert rep.ok and not rep.warnings and rep.head["signatures"] == 1


def test_legacy_versions_load_and_are_reported(store, settings):
    """Versions written before the key (no seal) still load, checked by content hash, and verify says
    they are unprotected; a new draft after a legacy signed version makes v2."""
    from dataclasses import replace

    from agent.signoff import ReportVersion

    r = make_report()
    rv = ReportVersion(report=r, version=1, created_at="2026-01-01T00:00:00+00:00", status="signed",
                       signed_by="dr_a", signed_at="2026-01-01T00:00:00+00:00", content_hash=r.content_hash())
    _file(settings).parent.mkdir(parents=True)
    _file(settings).write_text(json.dumps(rv.to_dict()))
    assert store.load("case-1", 1).signed_by == "dr_a"
    rep = store.verify()
    assert rep.ok and any("before the integrity key" in w for w in rep.warnings)
    assert store.save_draft(make_report(impression="New.")).version == 2
    bad = replace(rv, report=make_report(impression="Changed."))
    _file(settings).write_text(json.dumps(bad.to_dict()))
    with pytest.raises(SignoffError, match="content hash"):
        store.load("case-1", 1)


def test_holder_of_the_key_can_forge(store, settings):
    """Not protected: whoever can read the key can reseal an edited file and rewrite the ledger entry and
    the anchor to match (README). Resealing the file alone is not enough: the ledger remembers its seal."""
    from agent.integrity import Anchor, ChainHead, canonical, read_anchor, write_anchor

    _signed(store)

    def forge(d):
        d["signed_by"] = "dr_mallory"
        d["seal"] = store.key.mac("report", canonical({k: v for k, v in d.items() if k != "seal"}))

    _tamper(_file(settings), forge)
    with pytest.raises(SignoffError, match="replaced"):
        store.load("case-1", 1)
    seal = json.loads(_file(settings).read_text())["seal"]
    entry = {**store.ledger.records()[0], "seal": seal, "signed_by": "dr_mallory"}
    entry["mac"] = store.key.mac("signatures", canonical({k: v for k, v in entry.items() if k != "mac"}))
    store.ledger.path.write_bytes(canonical(entry) + b"\n")
    anchor = read_anchor(store.key)
    write_anchor(store.key, Anchor(anchor.created, {**anchor.chains, "signatures": ChainHead(1, entry["mac"])}))
    assert store.load("case-1", 1).signed_by == "dr_mallory" and store.verify().ok


def test_bad_inputs(store):
    with pytest.raises(InputError):
        store.load("case-1")
    with pytest.raises(InputError):
        store.save_draft(make_report(case_id="../evil"))
    store.save_draft(make_report())
    with pytest.raises(InputError):
        store.sign("case-1", 1, user="")
    with pytest.raises(InputError):
        store.load("case-1", 7)
    for bad in ("..", ".", ".signatures.jsonl", "a/b", ""):
        with pytest.raises(InputError):
            store.save_draft(make_report(case_id=bad))
