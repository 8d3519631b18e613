"""A real Orthanc PACS for the tests and the benchmark: Debian's ``orthanc`` and ``orthanc-dicomweb``.

:class:`OrthancServer` starts its own ``Orthanc`` process on a free loopback port with a generated
configuration: the DICOMweb plugin on, HTTP authentication on with a generated user and password, storage
and index in a private folder, no DICOM (DIMSE) listener, no access from other hosts. Optional Lua scripts
(for example a filter that rejects some instances) go into the configuration as files.

Test-data builders live here too: a CT series built from pydicom's ``CT_small.dcm`` (by exact name) with a
chosen patient module, and non-image instances (a Basic Text SR) to put beside it.
"""

from __future__ import annotations

import copy
import glob
import json
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ORTHANC_BINARIES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
DICOMWEB_PLUGIN_GLOB = "/usr/lib/orthanc/libOrthancDicomWeb.so*"


def orthanc_binary() -> str | None:
    found = shutil.which("Orthanc")
    if found:
        return found
    return next((b for b in ORTHANC_BINARIES if Path(b).is_file()), None)


def dicomweb_plugin() -> str | None:
    found = sorted(glob.glob(DICOMWEB_PLUGIN_GLOB))
    return found[-1] if found else None


def missing_reason() -> str | None:
    """Why an Orthanc cannot be started here (None when it can)."""
    if orthanc_binary() is None:
        return "Orthanc is not installed (apt-get install -y orthanc orthanc-dicomweb)"
    if dicomweb_plugin() is None:
        return "the Orthanc DICOMweb plugin is not installed (apt-get install -y orthanc-dicomweb)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OrthancServer:
    """One Orthanc process. ``start()`` blocks until its REST API answers; ``stop()`` ends it."""

    root: Path
    lua: str | None = None                  # a Lua script (e.g. a ReceivedInstanceFilter)
    user: str = "radconsult-test"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "Name": "radconsult-test",
            "StorageDirectory": str(self.storage),
            "IndexDirectory": str(self.root / "index"),
            "StorageCompression": False,
            "MaximumStorageCacheSize": 0,     # every read goes to the files (a test may alter one)
            "HttpServerEnabled": True,
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.user: self.password},
            "DicomServerEnabled": False,
            "DicomPort": free_port(),
            "Plugins": [dicomweb_plugin()],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": "127.0.0.1"},
            "HttpDescribeErrors": True,
            "ConcurrentJobs": 1,
            "HttpThreadsCount": 8,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
        }
        if self.lua:
            script = self.root / "filter.lua"
            script.write_text(self.lua, encoding="utf-8")
            config["LuaScripts"] = [str(script)]
        return config

    def start(self, timeout_s: float = 30.0) -> OrthancServer:
        import httpx

        binary, reason = orthanc_binary(), missing_reason()
        if binary is None or reason:
            raise RuntimeError(reason or "Orthanc missing")
        self.root.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(3):  # a free port can be taken between the probe and Orthanc's bind: try another
            self.port = free_port()
            config = self.root / "orthanc.json"
            config.write_text(json.dumps(self._config(), indent=1), encoding="utf-8")
            log = (self.root / "orthanc.log").open("ab")
            self.process = subprocess.Popen([binary, str(config)], cwd=self.root, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    if httpx.get(f"{self.url}/system", auth=(self.user, self.password), timeout=1).status_code == 200:
                        return self
                except httpx.HTTPError as exc:
                    last_error = type(exc).__name__
                time.sleep(0.1)
            self.stop()
        tail = (self.root / "orthanc.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"Orthanc did not start ({last_error}):\n{tail}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    # --- REST helpers (the tests' own view of the PACS, not through radconsult) -----------------------
    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        r = httpx.request(method, f"{self.url}{path}", auth=(self.user, self.password), timeout=30, **kwargs)
        r.raise_for_status()
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.content

    def upload(self, paths_or_bytes: list[Path | bytes]) -> list[str]:
        """Store DICOM files through Orthanc's REST API; returns the Orthanc instance ids."""
        ids = []
        for item in paths_or_bytes:
            data = item if isinstance(item, bytes) else Path(item).read_bytes()
            ids.append(self.rest("POST", "/instances", content=data)["ID"])
        return ids

    def instance_file(self, orthanc_id: str) -> Path:
        """Where Orthanc keeps an instance's DICOM file on disk (uncompressed storage)."""
        info = self.rest("GET", f"/instances/{orthanc_id}/attachments/dicom/info")
        uuid = info["Uuid"]
        return self.storage / uuid[:2] / uuid[2:4] / uuid

    def find_instances(self, study_uid: str) -> list[dict[str, Any]]:
        """Every instance Orthanc files under ``study_uid``, with its main tags."""
        found = self.rest("POST", "/tools/find", json={"Level": "Instance", "Expand": True,
                                                        "Query": {"StudyInstanceUID": study_uid}})
        return list(found)


# --- test data --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatientModule:
    name: str
    patient_id: str
    birth_date: str
    sex: str
    accession: str


def ct_series(patient: PatientModule, slices: int = 12, *, study_uid: str | None = None,
              series_uid: str | None = None, spacing_mm: float = 2.5, seed: str = "ct", matrix: int = 128,
              series_number: int = 2, study_date: str | None = None, body_part: str | None = None,
              pixel_spacing: bool = True) -> list[bytes]:
    """A CT series of ``slices`` copies of pydicom's CT_small.dcm (128 x 128, 0.66 mm pixels) at shifted
    positions, with ``patient``'s module and new study / series / instance UIDs; DICOM files as bytes.
    ``matrix=512`` enlarges each slice 4x (pixels repeated, spacing divided by 4): the size of a clinical CT.
    ``study_date`` (YYYYMMDD) replaces the sample's 2004 dates (a prior and a current study of one patient);
    ``body_part`` sets Body Part Examined; ``pixel_spacing=False`` drops Pixel Spacing (no lengths in mm)."""
    import io

    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    path = get_testdata_file("CT_small.dcm", download=False)
    if path is None:
        raise FileNotFoundError("pydicom test file CT_small.dcm")
    src = pydicom.dcmread(path)
    if src.file_meta.TransferSyntaxUID.is_compressed:
        src.decompress()
    if matrix != src.Rows:
        import numpy as np

        factor = matrix // int(src.Rows)
        arr = src.pixel_array
        src.PixelData = np.repeat(np.repeat(arr, factor, axis=0), factor, axis=1).astype(arr.dtype).tobytes()
        src.Rows = src.Columns = matrix
        src.PixelSpacing = [float(v) / factor for v in src.PixelSpacing]
    study_uid = study_uid or generate_uid(entropy_srcs=[seed, "study"])
    series_uid = series_uid or generate_uid(entropy_srcs=[seed, "series"])
    x, y, z = (float(v) for v in src.ImagePositionPatient)
    out = []
    for i in range(slices):
        ds = copy.deepcopy(src)
        ds.PatientName = patient.name
        ds.PatientID = patient.patient_id
        ds.PatientBirthDate = patient.birth_date
        ds.PatientSex = patient.sex
        ds.AccessionNumber = patient.accession
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = "CHEST 1.25mm"
        ds.StudyDescription = "CT CHEST"
        ds.ImagePositionPatient = [x, y, z + spacing_mm * i]
        ds.SliceLocation = z + spacing_mm * i
        ds.InstanceNumber = i + 1
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[seed, "sop", str(i)])
        if study_date:
            for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
                setattr(ds, keyword, study_date)
        if body_part:
            ds.BodyPartExamined = body_part
        if not pixel_spacing:
            del ds.PixelSpacing
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def text_sr(patient: PatientModule, study_uid: str, series_uid: str, *, seed: str = "sr") -> bytes:
    """A Basic Text SR (a non-image instance) in the given study and series."""
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[seed, "sr-sop"])
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "SR"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.AccessionNumber = patient.accession
    ds.StudyDate = "20040119"
    ds.StudyTime = "072730"
    ds.SeriesNumber = 99
    ds.InstanceNumber = 1
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ContentDate = "20040119"
    ds.ContentTime = "072730"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# --- the story's PACS content -----------------------------------------------------------------------------
HILDA = PatientModule(name="Quellmalz^Hildegard^Maria", patient_id="PID-H15-7731", birth_date="19550312", sex="F",
                      accession="ACC-H15-0042")


@dataclass
class PacsStory:
    """What :func:`load_story` put into the PACS: a chest CT study of HILDA with a 12-slice series that also
    holds a dose SR, a second 4-slice image series, and a series holding only an SR; the SIIM CR when the
    shared data is present."""

    server: OrthancServer
    patient: PatientModule
    study_uid: str
    ct_series_uid: str
    ct_sops: list[str]
    lung_series_uid: str
    sr_series_uid: str
    cr_study_uid: str | None = None
    cr_series_uid: str | None = None

    def credential_file(self, folder: Path, password: str | None = None) -> Path:
        path = folder / "pacs-credential"
        path.write_text(f"{self.server.user}:{password or self.server.password}\n", encoding="utf-8")
        path.chmod(0o600)
        return path


def load_story(server: OrthancServer, shared_cr: Path | None = None) -> PacsStory:
    import io

    import pydicom
    from pydicom.uid import generate_uid

    study_uid = generate_uid(entropy_srcs=["h15-story", "study"])
    ct = ct_series(HILDA, 12, study_uid=study_uid, seed="h15-ct")
    first = pydicom.dcmread(io.BytesIO(ct[0]))
    lung = ct_series(HILDA, 4, study_uid=study_uid, seed="h15-lung", spacing_mm=5.0, series_number=1)
    sr_series = generate_uid(entropy_srcs=["h15-story", "sr-series"])
    server.upload(ct + lung + [text_sr(HILDA, study_uid, first.SeriesInstanceUID, seed="h15-dose"),
                               text_sr(HILDA, study_uid, sr_series, seed="h15-only-sr")])
    story = PacsStory(server, HILDA, study_uid, str(first.SeriesInstanceUID),
                      [str(pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID) for b in ct],
                      str(pydicom.dcmread(io.BytesIO(lung[0])).SeriesInstanceUID), sr_series)
    if shared_cr is not None and shared_cr.is_file():
        cr = pydicom.dcmread(shared_cr, stop_before_pixels=True)
        server.upload([shared_cr])
        story.cr_study_uid, story.cr_series_uid = str(cr.StudyInstanceUID), str(cr.SeriesInstanceUID)
    return story


def story_fixture(tmp_path_factory: Any, name: str = "orthanc", extra: Path | None = None) -> Iterator[PacsStory]:
    """Body of the test modules' ``story`` fixtures: a fresh Orthanc with the story loaded (``extra``: one
    more file), stopped afterwards; skips with the install command when Orthanc is absent."""
    import pytest

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    server = OrthancServer(tmp_path_factory.mktemp(name)).start()
    try:
        yield load_story(server, extra)
    finally:
        server.stop()


# --- a current and a prior study of one patient (comparison with priors) ---------------------------------------
@dataclass
class PriorStory:
    """HILDA's chest CT today (``current``), her chest CT a year before (``prior``) and an abdominal CT two years
    before (same modality, another body part: not a prior). Each study holds one 6-slice series."""

    server: OrthancServer
    patient: PatientModule
    current: tuple[str, str]          # (study UID, series UID)
    prior: tuple[str, str]
    abdomen: tuple[str, str]
    dates: dict[str, str]             # "current" / "prior" / "abdomen" -> YYYYMMDD


PRIOR_DATES = {"current": "20240502", "prior": "20230510", "abdomen": "20220301"}


def load_prior_story(server: OrthancServer, patient: PatientModule = HILDA) -> PriorStory:
    import io

    import pydicom

    uids: dict[str, tuple[str, str]] = {}
    for name, date in PRIOR_DATES.items():
        files = ct_series(patient, 6, seed=f"prior-story-{name}", study_date=date,
                          body_part="ABDOMEN" if name == "abdomen" else "CHEST")
        server.upload(list(files))
        first = pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True)
        uids[name] = (str(first.StudyInstanceUID), str(first.SeriesInstanceUID))
    return PriorStory(server, patient, uids["current"], uids["prior"], uids["abdomen"], dict(PRIOR_DATES))


def prior_story_fixture(tmp_path_factory: Any, name: str = "orthanc-priors") -> Iterator[PriorStory]:
    """A fresh Orthanc holding :func:`load_prior_story`; skips with the install command when Orthanc is absent."""
    import pytest

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    server = OrthancServer(tmp_path_factory.mktemp(name)).start()
    try:
        yield load_prior_story(server)
    finally:
        server.stop()
