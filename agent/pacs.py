"""The PACS round trip for the CLI and the UI: open a series like an upload, send a signed report back.

::

    client = PacsClient(pacs_config(settings))               # agent.wiring
    studies = client.find(accession="A123")                  # tools.pacs.StudySummary, newest first
    series = client.series(studies[0].study_uid)             # tools.pacs.SeriesSummary: choose one
    opened = open_series(settings, client, study_uid, series_uid)      # OpenedSeries(study=ImageStudy, ...)
    got = get_series(settings, client, study_uid, series_uid, out_dir) # de-identified files on disk
    sent = send_report(report_version, reid_map(settings), client, SentLog.for_settings(settings))

Both ways in record the originals in the re-identification map (:mod:`tools.pacs_reid`) and go through
``tools.imaging.load`` before anything else sees the images. :func:`send_report` sends a *signed* version
only, as a DICOM Comprehensive SR carrying the original patient module and referencing the original study
and instances (so the PACS files it under that study); the local exports keep the pseudonyms. The SR's
UIDs are derived from the version's content hash: sending the same version again is refused as a no-op by
the :class:`SentLog`, and a retry after a timeout repeats the very same instance, which a PACS files once.

The ``audit_*`` helpers write the PHI-free audit records both front ends use: searched identifiers only as
SHA-256 hashes, studies by pseudonymised UIDs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.signoff import MeasurementRef, ReportStore, ReportVersion, SignoffError, StudyRef
from tools.errors import InputError, PacsError, PacsTimeoutError, PacsUnavailableError, RadconsultError

if TYPE_CHECKING:
    from agent.audit import AuditLog
    from agent.settings import Settings
    from tools.imaging import ImageStudy
    from tools.pacs import PacsClient, RetrievedSeries, SeriesPlan, StudySummary
    from tools.pacs_priors import StudyRole
    from tools.pacs_reid import ReidMap

log = logging.getLogger(__name__)

_REPORT_ID = re.compile(r"^(?P<case>[A-Za-z0-9._-]{1,80})(?:/v?(?P<version>\d{1,6}))?$")


class NotSignedError(SignoffError):
    """Only a signed summary version may leave the machine for the PACS."""


# =====================================================================================================
# opening a series
# =====================================================================================================
@dataclass(frozen=True)
class OpenedSeries:
    """A series opened from the PACS: the de-identified study (as an upload gives it) and what was skipped."""

    study: ImageStudy
    images: int
    notes: tuple[str, ...]
    seconds: float


def open_series(settings: Settings, client: PacsClient, study_uid: str, series_uid: str, *,
                plan: SeriesPlan | None = None) -> OpenedSeries:
    """Retrieve one series and load it with ``tools.imaging.load`` exactly like an upload of the same files
    (same pseudonymous keys and UIDs), then delete the files. The originals go to the re-identification map."""
    from agent.wiring import imaging_config, pacs_pseudonymiser, reid_map
    from tools.imaging import load

    t0 = time.perf_counter()
    scratch = settings.cache_dir / "pacs"
    scratch.mkdir(parents=True, exist_ok=True)
    os.chmod(scratch, 0o700)
    work = Path(tempfile.mkdtemp(prefix="open-", dir=scratch))
    loaded: list[ImageStudy] = []
    try:
        got = client.retrieve_series(study_uid, series_uid, work / "series", pseudonymiser=pacs_pseudonymiser(settings),
                                     reid=reid_map(settings), deidentify=False, plan=plan,
                                     verify=lambda folder: loaded.append(load(folder, imaging_config(settings))))
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the original files never outlive the load
    return OpenedSeries(loaded[0], got.count, got.notes, round(time.perf_counter() - t0, 3))


def get_series(settings: Settings, client: PacsClient, study_uid: str, series_uid: str, out_dir: Path, *,
               plan: SeriesPlan | None = None) -> tuple[RetrievedSeries, ImageStudy]:
    """Retrieve one series as de-identified DICOM files into the new folder ``out_dir`` (all or nothing);
    the files are loaded once, before they are moved into place, to check that they open."""
    from agent.wiring import imaging_config, pacs_pseudonymiser, reid_map
    from tools.imaging import load

    loaded: list[ImageStudy] = []
    got = client.retrieve_series(study_uid, series_uid, out_dir, pseudonymiser=pacs_pseudonymiser(settings),
                                 reid=reid_map(settings), deidentify=True, plan=plan,
                                 verify=lambda folder: loaded.append(load(folder, imaging_config(settings))))
    return got, loaded[0]


# =====================================================================================================
# sending a signed report
# =====================================================================================================
@dataclass(frozen=True)
class SendResult:
    """One send (or the no-op when this version was sent before)."""

    case_id: str
    version: int
    sop_instance_uid: str          # the SR's UID (derived from the content hash: not an identifier)
    already_sent: bool
    sent_at: str
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parse_report_id(text: str) -> tuple[str, int | None]:
    """``CASE``, ``CASE/vN`` or ``CASE/N`` -> (case id, version or None for the newest)."""
    m = _REPORT_ID.match((text or "").strip())
    if not m:
        raise InputError("a report is named CASE/vN (the case id and the signed version, e.g. cli-1a2b3c/v2)")
    return m.group("case"), int(m.group("version")) if m.group("version") else None


def load_report(store: ReportStore, report_id: str) -> ReportVersion:
    """The version named ``CASE/vN`` (``CASE``: the newest), signed or not."""
    case_id, version = parse_report_id(report_id)
    return store.load(case_id, version)


def check_signed(store: ReportStore, rv: ReportVersion) -> ReportVersion:
    """``rv`` when signed; a draft raises :class:`NotSignedError` naming the newest signed version, if any."""
    if not rv.is_signed:
        case_id = rv.report.case_id
        signed = [v for v in store.versions(case_id) if store.load(case_id, v).is_signed]
        hint = f"; the newest signed version is {case_id}/v{signed[-1]}" if signed else ""
        raise NotSignedError(f"{case_id}/v{rv.version} is a draft: only a signed summary is sent to the PACS "
                             f"(sign it first){hint}")
    return rv


def _derived_uid(*parts: str) -> str:
    return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_OID, "radconsult-sr/" + "/".join(parts)).int)


def report_sr_uids(rv: ReportVersion) -> tuple[str, str]:
    """(series, SOP instance) UIDs of the SR for this version: one series per case, one instance per signed
    content, so a resend is the same instance."""
    return (_derived_uid("series", rv.report.case_id),
            _derived_uid("instance", rv.report.case_id, str(rv.version), str(rv.content_hash)))


def pacs_sr(rv: ReportVersion, reid: ReidMap) -> Any:
    """The SR for the PACS: the signed version with the original patient module and original UIDs."""
    import highdicom  # noqa: F401 - its loggers must exist before they are quietened

    from agent.exports import to_dicom_sr
    from tools.pacs import withhold_logs

    withhold_logs("highdicom")  # highdicom logs the UIDs of the (here original) evidence it copies
    study = rv.report.study
    if study is None or not study.study_uid:
        raise InputError("this summary has no DICOM study to file it under: only reports of studies opened "
                         "from the PACS can be sent")
    original = reid.resolve(study.study_uid, study.series_uid, study.sop_instance_uids)
    ref = StudyRef(study_uid=original.study_uid, series_uid=original.series_uid,
                   sop_instance_uids=original.sop_instance_uids, sop_class_uid=original.sop_class_uid,
                   modality=study.modality)
    series_uid, sop_uid = report_sr_uids(rv)
    measured = original_measurements(rv.report.measurements, reid, original.patient.patient_id)
    sr = to_dicom_sr(rv, study=ref, patient=original.patient.dicom_attributes(), sop_instance_uid=sop_uid,
                     series_instance_uid=series_uid, measurements=measured)
    if original.patient.issuer_of_patient_id:
        sr.IssuerOfPatientID = original.patient.issuer_of_patient_id
    return sr


def original_measurements(measurements: tuple[MeasurementRef, ...], reid: ReidMap,
                          patient_id: str) -> tuple[MeasurementRef, ...]:
    """The report's lesion measurements with their studies' original UIDs (the current and each prior study).
    A time point whose study was not opened from the PACS stays out of the SR sent (its text stays in the
    Comparison section); one that the map files under another patient ID is refused."""
    from tools.errors import ReidentificationError

    by_series: dict[tuple[str | None, str | None], list[MeasurementRef]] = {}
    for m in measurements:
        by_series.setdefault((m.study_uid, m.series_uid), []).append(m)
    out: list[MeasurementRef] = []
    for (study_uid, series_uid), group in by_series.items():
        sops = [m.sop_instance_uid for m in group if m.sop_instance_uid]
        if not study_uid or len(sops) != len(group):
            continue
        try:
            original = reid.resolve(study_uid, series_uid, sops)
        except ReidentificationError:
            log.info("a measured study was not opened from the PACS: its measurement groups stay out of the SR")
            continue
        if original.patient.patient_id != patient_id:
            raise ReidentificationError("a measured prior study is filed under another patient in the PACS: the "
                                        "report is not sent")
        mapping = dict(zip(sops, original.sop_instance_uids, strict=True))
        out += [dataclasses.replace(m, study_uid=original.study_uid, series_uid=original.series_uid,
                                    sop_instance_uid=mapping[str(m.sop_instance_uid)],
                                    sop_class_uid=original.sop_class_uid) for m in group]
    return tuple(out)


class SentLog:
    """Which signed versions went to the PACS (``data_dir/pacs/sent.sqlite``): case id, version, content hash
    and the SR's UID, never an identifier. States: ``pending`` while a send is under way (or after one
    whose outcome is unknown: a timeout), ``sent`` once the PACS holds it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def for_settings(cls, settings: Settings) -> SentLog:
        return cls(settings.pacs_dir / "sent.sqlite")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS sent (case_id TEXT NOT NULL, version INTEGER NOT NULL, "
                         "content_hash TEXT NOT NULL, sop_instance_uid TEXT NOT NULL, state TEXT NOT NULL, "
                         "updated_at TEXT NOT NULL, PRIMARY KEY (case_id, version))")
            yield conn
        except sqlite3.Error as exc:
            raise PacsError(f"the record of reports sent cannot be used: {exc}") from exc
        finally:
            conn.close()

    @contextmanager
    def claim(self, rv: ReportVersion) -> Iterator[dict[str, Any] | None]:
        """Hold the record of this version for one send (an exclusive lock across processes). Yields the
        existing row (``state`` "sent" or "pending") or None."""
        from filelock import FileLock, Timeout

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path.with_suffix(".lock")), timeout=60)
        try:
            lock.acquire()
        except Timeout:
            raise PacsError("another send is holding the record of reports sent; try again") from None
        try:
            with self._db() as conn:
                row = conn.execute("SELECT state, sop_instance_uid, content_hash, updated_at FROM sent WHERE "
                                   "case_id = ? AND version = ?", (rv.report.case_id, rv.version)).fetchone()
            yield None if row is None else dict(zip(("state", "sop_instance_uid", "content_hash", "updated_at"), row,
                                                    strict=True))
        finally:
            lock.release()

    def mark(self, rv: ReportVersion, sop_uid: str, state: str) -> str:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._db() as conn:
            conn.execute("INSERT OR REPLACE INTO sent VALUES (?, ?, ?, ?, ?, ?)",
                         (rv.report.case_id, rv.version, str(rv.content_hash), sop_uid, state, now))
        return now

    def forget(self, rv: ReportVersion) -> None:
        with self._db() as conn:
            conn.execute("DELETE FROM sent WHERE case_id = ? AND version = ? AND state = 'pending'",
                         (rv.report.case_id, rv.version))


def send_report(rv: ReportVersion, reid: ReidMap, client: PacsClient, sent: SentLog) -> SendResult:
    """Send a signed version to the PACS as a DICOM SR filed under the original study; at most once.

    A draft raises :class:`NotSignedError`; a version already sent returns ``already_sent=True`` and sends
    nothing. A failure the PACS reported (rejected, refused credentials) clears the attempt; one whose outcome
    is unknown (timeout, dropped connection) stays pending, and the next send repeats the same SR instance.
    """
    if not rv.is_signed:
        raise NotSignedError(f"{rv.report.case_id}/v{rv.version} is a draft: only a signed summary is sent to "
                             "the PACS (sign it first)")
    _, sop_uid = report_sr_uids(rv)
    with sent.claim(rv) as previous:
        if previous is not None and previous["state"] == "sent" and previous["content_hash"] == rv.content_hash:
            return SendResult(rv.report.case_id, rv.version, previous["sop_instance_uid"], True,
                              previous["updated_at"])
        sr = pacs_sr(rv, reid)  # every local check (map, referenced images) before anything leaves
        sent.mark(rv, sop_uid, "pending")
        t0 = time.perf_counter()
        try:
            client.store([sr], str(sr.StudyInstanceUID))
        except (PacsTimeoutError, PacsUnavailableError):
            raise  # the PACS may hold it: stays pending, a retry repeats the same instance
        except RadconsultError:
            sent.forget(rv)
            raise
        when = sent.mark(rv, sop_uid, "sent")
    return SendResult(rv.report.case_id, rv.version, sop_uid, False, when, round(time.perf_counter() - t0, 3))


# =====================================================================================================
# audit records (no identifier: searched values hashed, studies by pseudonymised UIDs)
# =====================================================================================================
def audit_find(audit: AuditLog, user: str | None, *, accession: str | None, patient_id: str | None,
               date: str | None, modality: str | None, results: int) -> None:
    from agent.audit import text_hash

    audit.append("pacs_find", user=user, details={
        "accession_sha256": text_hash(accession.strip()) if accession else None,
        "patient_id_sha256": text_hash(patient_id.strip()) if patient_id else None,
        "date_sha256": text_hash(date.strip()) if date else None,
        "modality": (modality or "").strip().upper()[:16] or None, "results": results})


def audit_open(audit: AuditLog, user: str | None, study: ImageStudy, *, images: int, skipped: int,
               files_written: bool, case_id: str | None = None) -> None:
    audit.append("pacs_open", user=user, case_id=case_id, details={
        "study_key": study.study_key, "series_uid": study.series_uid, "images": images, "skipped": skipped,
        "deidentified_files_written": files_written})


def audit_send(audit: AuditLog, user: str | None, rv: ReportVersion, *, result: SendResult | None,
               error: Exception | None = None) -> None:
    audit.append("pacs_send", user=user, case_id=rv.report.case_id, evidence_ids=[e.id for e in rv.report.evidence],
                 details={"version": rv.version, "content_sha256": rv.content_hash,
                          "sr_uid": result.sop_instance_uid if result else None,
                          "already_sent": result.already_sent if result else None,
                          "ok": error is None, "error": type(error).__name__ if error else None})


def study_roles_for(client: PacsClient, studies: list[StudySummary],
                    current_uid: str | None = None) -> dict[str, StudyRole]:
    """Which found studies are priors of the current one (the named one, else the newest): same patient, earlier,
    same modality and body part (:mod:`tools.pacs_priors`). Body parts are asked of the PACS only for the studies
    that could be priors (one series-level QIDO each)."""
    from tools.pacs_priors import study_roles

    if not studies:
        return {}
    current = next((s for s in studies if s.study_uid == current_uid), None) or max(
        studies, key=lambda s: (s.study_date, s.study_time))
    candidates = [s for s in studies if s is current or (s.patient_id == current.patient_id and (
        not current.modalities or set(s.modalities) & set(current.modalities)))]
    parts = {s.study_uid: client.body_parts(s.study_uid) for s in candidates}
    return study_roles(studies, parts, current.study_uid)


def study_choices(client: PacsClient, study_uid: str) -> list[Any]:
    """The series of a study a clinician can open (those whose modality says they hold images)."""
    return [s for s in client.series(study_uid) if s.likely_images]
