"""Re-identification for the way back to the PACS: a local map from pseudonymised UIDs to the originals.

When a series is retrieved (:meth:`tools.pacs.PacsClient.retrieve_series`), :meth:`ReidMap.record` stores,
for every instance, the original Study / Series / SOP Instance UIDs and SOP Class, and, per study, the
original patient and study module (name, ID, issuer, birth date, sex, accession number, study ID, date,
time, referring physician). Each original UID is stored under the pseudonyms the rest of radconsult can
hold for it on this installation:

* one pass of :func:`tools.deid.remap_uid` (the loader over the original files: an upload, the UI's
  "Open from PACS"), and
* two passes (the loader over the de-identified files ``radconsult pacs get`` writes, which are remapped
  again when loaded).

The map is used only to send a signed report back (:meth:`ReidMap.resolve`); nothing else reads it. It is a
SQLite file created with mode 0600 in a folder with mode 0700 (``data_dir/pacs/reid.sqlite``): only the
account that runs radconsult (and root) can read it. Deleting the file removes every entry; reports of
studies opened earlier can then no longer be sent (:class:`~tools.errors.ReidentificationError`).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.errors import PacsError, ReidentificationError

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,      -- the original Study Instance UID
    patient TEXT NOT NULL,           -- JSON of OriginalPatient
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uids (
    pseudo TEXT PRIMARY KEY,         -- a pseudonymised UID (one or two passes of remap_uid)
    original TEXT NOT NULL,
    level TEXT NOT NULL,             -- study | series | instance
    study_uid TEXT NOT NULL,         -- the original study it belongs to
    series_uid TEXT,                 -- the original series (instances)
    sop_class TEXT                   -- the SOP Class UID (instances)
);
"""


class Pseudonymiser:
    """The installation's de-identification as the PACS module uses it: the one place in the PACS code that
    calls :mod:`tools.deid`. ``params`` is what :mod:`tools.deid` takes (built by
    ``agent.wiring.pacs_pseudonymiser``), so a change of that signature touches only these two methods."""

    def __init__(self, params: Any) -> None:
        self._params = params

    def uid(self, uid: str) -> str:
        """The consistent pseudonym of ``uid`` (DICOM well-known UIDs are returned unchanged)."""
        from tools.deid import remap_uid

        return remap_uid(uid, self._params)

    def dataset(self, ds: Dataset) -> Dataset:
        """A de-identified copy of ``ds`` (PS3.15 Annex E basic profile, as ``radconsult deid`` writes)."""
        from tools.deid import deidentify_dataset

        return deidentify_dataset(ds, self._params)


@dataclass(frozen=True)
class OriginalPatient:
    """The patient and study module as the PACS holds it: what the report sent back must carry so that the
    PACS files it under the same patient and study. Values are DICOM strings ("" when absent)."""

    patient_name: str = ""
    patient_id: str = ""
    issuer_of_patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    accession_number: str = ""
    study_id: str = ""
    study_date: str = ""
    study_time: str = ""
    referring_physician_name: str = ""

    _KEYWORDS = {"patient_name": "PatientName", "patient_id": "PatientID",
                 "issuer_of_patient_id": "IssuerOfPatientID", "patient_birth_date": "PatientBirthDate",
                 "patient_sex": "PatientSex", "accession_number": "AccessionNumber", "study_id": "StudyID",
                 "study_date": "StudyDate", "study_time": "StudyTime",
                 "referring_physician_name": "ReferringPhysicianName"}

    @classmethod
    def from_dataset(cls, ds: Dataset) -> OriginalPatient:
        return cls(**{name: str(ds.get(keyword, "") or "") for name, keyword in cls._KEYWORDS.items()})

    def dicom_attributes(self) -> dict[str, str]:
        """Keyword -> value, for the dataset sent back."""
        return {keyword: getattr(self, name) for name, keyword in self._KEYWORDS.items()}

    def to_json(self) -> str:
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> OriginalPatient:
        data = json.loads(text)
        return cls(**{f.name: str(data.get(f.name, "")) for f in fields(cls)})


@dataclass(frozen=True)
class OriginalInstance:
    """One retrieved instance, by its original UIDs."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str


@dataclass(frozen=True)
class OriginalStudy:
    """What a report's pseudonymised study reference maps back to: the original UIDs and patient module."""

    study_uid: str
    series_uid: str
    sop_instance_uids: tuple[str, ...]
    sop_class_uid: str
    patient: OriginalPatient

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReidMap:
    """The re-identification map at ``path`` (normally ``settings.pacs_dir / "reid.sqlite"``). Cheap to
    construct; the file is created (mode 0600) on the first write."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    # --- storage --------------------------------------------------------------------------------------
    def _create_private(self) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            elif stat.S_IMODE(self.path.stat().st_mode) & 0o077:
                log.warning("the re-identification map was readable by other accounts; set it to mode 0600")
                os.chmod(self.path, 0o600)
        except FileExistsError:
            pass  # another process created it meanwhile, with the same mode
        except OSError as exc:
            raise PacsError(f"cannot create the re-identification map in {folder}: {exc.strerror}") from exc

    @contextmanager
    def _connect(self, write: bool) -> Iterator[sqlite3.Connection]:
        if write:
            self._create_private()
        elif not self.path.exists():
            raise ReidentificationError("no study has been opened from the PACS on this installation "
                                        "(the re-identification map is empty or was deleted)")
        try:
            conn = sqlite3.connect(str(self.path), timeout=10)
        except sqlite3.Error as exc:
            raise PacsError(f"cannot open the re-identification map: {exc}") from exc
        try:
            conn.executescript(_SCHEMA)
            with conn:  # one transaction: committed on success, rolled back on error
                yield conn
        except sqlite3.Error as exc:
            raise PacsError(f"the re-identification map cannot be used: {exc}") from exc
        finally:
            conn.close()

    # --- writing ----------------------------------------------------------------------------------------
    def record(self, instances: Sequence[OriginalInstance], patient: OriginalPatient,
               pseudonymiser: Pseudonymiser) -> int:
        """Store ``instances`` (all of one study) and the study's patient module, in one transaction.
        Returns the number of pseudonyms written (each UID under its one- and two-pass pseudonyms)."""
        if not instances:
            return 0
        study_uids = {i.study_uid for i in instances}
        if len(study_uids) != 1:
            raise PacsError("a retrieved series spans several studies: the re-identification map refuses it")
        study = next(iter(study_uids))
        rows: dict[str, tuple[str, str, str, str | None, str | None]] = {}

        def add(original: str, level: str, series: str | None = None, sop_class: str | None = None) -> None:
            once = pseudonymiser.uid(original)
            for pseudo in (once, pseudonymiser.uid(once)):
                rows[pseudo] = (original, level, study, series, sop_class)

        add(study, "study")
        for inst in instances:
            add(inst.series_uid, "series")
            add(inst.sop_instance_uid, "instance", inst.series_uid, inst.sop_class_uid)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._connect(write=True) as conn:
            conn.execute("INSERT INTO studies(study_uid, patient, updated_at) VALUES (?, ?, ?) "
                         "ON CONFLICT(study_uid) DO UPDATE SET patient = excluded.patient, "
                         "updated_at = excluded.updated_at", (study, patient.to_json(), now))
            conn.executemany("INSERT OR REPLACE INTO uids(pseudo, original, level, study_uid, series_uid, sop_class) "
                             "VALUES (?, ?, ?, ?, ?, ?)", [(k, *v) for k, v in rows.items()])
        return len(rows)

    def forget_study(self, study_uid: str) -> int:
        """Remove a study (by its original or pseudonymised UID) and all its instances; returns rows removed."""
        if not self.path.exists():
            return 0
        with self._connect(write=True) as conn:
            row = conn.execute("SELECT study_uid FROM uids WHERE pseudo = ? AND level = 'study'",
                               (study_uid,)).fetchone()
            original = row[0] if row else study_uid
            n = conn.execute("DELETE FROM uids WHERE study_uid = ?", (original,)).rowcount
            n += conn.execute("DELETE FROM studies WHERE study_uid = ?", (original,)).rowcount
        return n

    # --- reading ------------------------------------------------------------------------------------------
    def resolve(self, study_uid: str, series_uid: str | None, sop_instance_uids: Iterable[str]) -> OriginalStudy:
        """The originals behind a report's pseudonymised study reference. Every referenced instance must be
        known, so the report sent back references exactly the images it was made from."""
        sops = tuple(sop_instance_uids)
        with self._connect(write=False) as conn:
            row = conn.execute("SELECT original FROM uids WHERE pseudo = ? AND level = 'study'",
                               (study_uid,)).fetchone()
            if row is None:
                raise ReidentificationError("this report's study was not opened from the PACS on this installation "
                                            "(or the re-identification map was deleted): there is nothing to send "
                                            "it back to")
            original_study = row[0]
            patient_row = conn.execute("SELECT patient FROM studies WHERE study_uid = ?", (original_study,)).fetchone()
            if patient_row is None:
                raise ReidentificationError("the re-identification map lacks this study's patient module: "
                                            "open the study from the PACS again")
            found: dict[str, tuple[str, str | None, str | None]] = {}
            for chunk_start in range(0, len(sops), 500):
                chunk = sops[chunk_start:chunk_start + 500]
                marks = ",".join("?" * len(chunk))
                for pseudo, original, series, sop_class in conn.execute(
                        f"SELECT pseudo, original, series_uid, sop_class FROM uids WHERE level = 'instance' "
                        f"AND study_uid = ? AND pseudo IN ({marks})", (original_study, *chunk)):
                    found[pseudo] = (original, series, sop_class)
            series_original = None
            if series_uid:
                srow = conn.execute("SELECT original FROM uids WHERE pseudo = ? AND level = 'series'",
                                    (series_uid,)).fetchone()
                series_original = srow[0] if srow else None
        missing = [s for s in sops if s not in found]
        if missing:
            raise ReidentificationError(f"{len(missing)} of the report's {len(sops)} referenced images are not in "
                                        "the re-identification map: open the series from the PACS again")
        if not sops:
            raise ReidentificationError("the report references no images of its study")
        originals = tuple(found[s][0] for s in sops)
        series_set = {found[s][1] for s in sops}
        classes = {found[s][2] for s in sops}
        series_original = series_original or (next(iter(series_set)) if len(series_set) == 1 else None)
        if series_original is None or None in classes or len(classes) != 1:
            raise ReidentificationError("the report's images span several series or SOP classes in the map")
        return OriginalStudy(original_study, series_original, originals, str(next(iter(classes))),
                             OriginalPatient.from_json(patient_row[0]))

    def counts(self) -> dict[str, int]:
        """Studies and instances held (for `radconsult pacs map`): numbers only."""
        if not self.path.exists():
            return {"studies": 0, "instances": 0}
        with self._connect(write=False) as conn:
            studies = conn.execute("SELECT COUNT(*) FROM studies").fetchone()[0]
            instances = conn.execute("SELECT COUNT(DISTINCT original) FROM uids WHERE level = 'instance'").fetchone()[0]
        return {"studies": int(studies), "instances": int(instances)}
