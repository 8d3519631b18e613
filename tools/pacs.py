"""PACS access over DICOMweb (``dicomweb-client``): QIDO-RS search, WADO-RS retrieve of a series, STOW-RS store.

::

    client = PacsClient(config)                              # config: PacsConfig (agent.wiring.pacs_config)
    studies = client.find(accession="A123")                  # list[StudySummary], newest first
    series = client.series(studies[0].study_uid)             # list[SeriesSummary]: modality, instance count
    got = client.retrieve_series(study_uid, series_uid, dest_dir, pseudonymiser=ps, reid=reid_map)
    client.store([sr_dataset], study_uid)                    # StoreResult; checked by reading it back

Privacy: identifiers typed into a search (accession number, patient ID) stay in this module: they go to the
PACS in the query and nowhere else. Log records of the HTTP libraries (which hold URLs with those values and
original UIDs) are withheld; our own log lines carry counts, sizes and timings only; error messages name
the PACS by host and never echo a searched value. Credentials live in :class:`Secret`, whose repr hides them.

Limits: a series is checked against ``max_instances`` and ``max_series_bytes`` from the QIDO metadata
(instance count, rows x columns x bits x frames) before any pixel data is requested, and again against the
bytes that actually arrive. Non-image instances in a series (structured reports, presentation states, key
object selections, ...) are not retrieved: :attr:`SeriesPlan.notes` says what was skipped. A retrieve is all
or nothing: files are written to a private temporary folder beside ``dest_dir`` and renamed into place only
when every instance has arrived intact.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tools.errors import (
    EmptySeriesError,
    InputError,
    PacsAuthError,
    PacsError,
    PacsNotFoundError,
    PacsTimeoutError,
    PacsUnavailableError,
    PartialRetrieveError,
    SeriesTooLargeError,
    SettingsError,
    StowRejectedError,
)
from tools.pacs_sop import instance_kind, is_image_kind

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

    from tools.pacs_reid import Pseudonymiser, ReidMap

log = logging.getLogger(__name__)

MiB = 1024 * 1024
_HEADER_BYTES = 4096        # allowance per instance for everything but the pixel data (estimates)
_QUIET_LOGGERS = ("dicomweb_client", "dicomweb_client.api", "dicomweb_client.web", "dicomweb_client.session_utils",
                  "urllib3.connectionpool", "requests")
_IDENTIFIER_RE = re.compile(r"^[^*?\\\x00-\x1f]{1,64}$")
_MODALITY_RE = re.compile(r"^[A-Z0-9]{1,16}$")
_DATE_RE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


# =====================================================================================================
# configuration
# =====================================================================================================
class Secret:
    """A credential. Its repr and str hide the value; only :meth:`reveal` gives it (to the HTTP session)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class PacsAuth:
    """HTTP basic (``username`` + ``secret`` password) or a bearer token (``secret``)."""

    kind: str                     # "basic" | "bearer"
    secret: Secret = field(repr=False)
    username: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("basic", "bearer"):
            raise SettingsError(f"PACS authentication must be basic or bearer, not {self.kind!r}")
        if self.kind == "basic" and not self.username:
            raise SettingsError("PACS basic authentication needs a user name (the secret is 'user:password')")
        if not self.secret.reveal():
            raise SettingsError("the PACS credential is empty")


@dataclass(frozen=True)
class PacsConfig:
    """Where the PACS is and how far to trust it. Built from the settings by ``agent.wiring.pacs_config``.

    ``url``: the DICOMweb root (e.g. ``https://pacs.example.org/dicom-web``); ``timeout_s``: connect and read
    limit per request, seconds; ``max_instances`` / ``max_series_bytes``: the largest series retrieved.
    """

    url: str
    auth: PacsAuth | None = None
    timeout_s: float = 30.0
    max_instances: int = 2000
    max_series_bytes: int = 512 * MiB

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError("the PACS URL must be http(s)://host[:port]/path of its DICOMweb root")
        if parts.username or parts.password:
            raise SettingsError("put PACS credentials in pacs_auth_file or pacs_auth_env, never in the URL")
        if not (self.timeout_s > 0 and self.max_instances > 0 and self.max_series_bytes > 0):
            raise SettingsError("PACS timeout and limits must be positive")

    @property
    def host(self) -> str:
        """The PACS by host and port only: what messages show."""
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


# =====================================================================================================
# results
# =====================================================================================================
@dataclass(frozen=True)
class StudySummary:
    """One study found by :meth:`PacsClient.find`. The patient fields are shown to the clinician to confirm
    the patient before opening; they never go to a log, a prompt or the case database."""

    study_uid: str
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    modalities: tuple[str, ...] = ()
    description: str = ""
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    series_count: int | None = None
    instance_count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class SeriesSummary:
    """One series of a study: what a clinician chooses from."""

    series_uid: str
    modality: str = ""
    number: int | None = None
    description: str = ""
    instance_count: int | None = None

    @property
    def likely_images(self) -> bool:
        """False for series whose modality says they hold no images (SR, PR, KO, documents)."""
        return self.modality.upper() not in {"SR", "PR", "KO", "DOC", "REG", "PLAN", "RTPLAN", "RTSTRUCT",
                                              "RTRECORD", "ECG", "AU", "HD", "FID"}

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "likely_images": self.likely_images}


@dataclass(frozen=True)
class InstanceSummary:
    """One instance from instance-level QIDO: enough to decide whether to fetch it and how big it is."""

    sop_instance_uid: str
    sop_class_uid: str = ""
    rows: int | None = None
    columns: int | None = None
    bits_allocated: int | None = None
    samples_per_pixel: int | None = None
    frames: int | None = None

    @property
    def kind(self) -> str:
        """"image", or what the non-image object is ("structured report", "presentation state", ...)."""
        return instance_kind(self.sop_class_uid, has_rows=bool(self.rows and self.columns))

    @property
    def is_image(self) -> bool:
        return is_image_kind(self.kind)

    @property
    def estimated_bytes(self) -> int:
        """Uncompressed size of the pixel data plus a header allowance (what a decoded copy needs)."""
        if not (self.rows and self.columns):
            return _HEADER_BYTES
        bits = self.bits_allocated or 16
        return (self.rows * self.columns * (self.samples_per_pixel or 1) * (self.frames or 1) * bits + 7) // 8 \
            + _HEADER_BYTES


@dataclass(frozen=True)
class SeriesPlan:
    """What :meth:`PacsClient.retrieve_series` will fetch, checked against the limits."""

    study_uid: str
    series_uid: str
    images: tuple[InstanceSummary, ...]
    skipped: tuple[InstanceSummary, ...] = ()
    estimated_bytes: int = 0

    @property
    def notes(self) -> tuple[str, ...]:
        counts = Counter(i.kind for i in self.skipped)
        return tuple(f"skipped {n} {kind}{'s' if n > 1 else ''} (not an image)" for kind, n in sorted(counts.items()))


@dataclass(frozen=True)
class RetrievedSeries:
    """A retrieved series on disk: ``path`` holds ``count`` DICOM files (de-identified unless asked not to).
    UIDs here are pseudonymised (one pass of the installation's remap)."""

    path: Path
    count: int
    bytes: int
    seconds: float
    deidentified: bool
    study_uid: str                 # pseudonymised
    series_uid: str                # pseudonymised
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path), "notes": list(self.notes)}


@dataclass(frozen=True)
class StoreResult:
    """What the PACS stored (STOW-RS), confirmed by reading each instance back with QIDO."""

    stored: tuple[str, ...]        # SOP Instance UIDs
    seconds: float


# =====================================================================================================
# input checks
# =====================================================================================================
def check_identifier(value: str, what: str) -> str:
    """An accession number or patient ID as typed: exact match only (no wildcards), at most 64 characters."""
    text = (value or "").strip()
    if not _IDENTIFIER_RE.match(text):
        raise InputError(f"{what} must be 1-64 characters without wildcards (* ?) or control characters")
    return text


def check_date(value: str) -> str:
    """A QIDO date or range: YYYYMMDD, YYYY-MM-DD, or a range FROM-TO of those (either end may be open)."""
    text = (value or "").strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        text = text.replace("-", "")
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}\.\.\d{4}-\d{2}-\d{2}", text):
        text = text.replace("-", "").replace("..", "-")
    m = _DATE_RE.match(text)
    if not text or not m or (m.group(2) is None and m.group(3) is not None) or text == "-":
        raise InputError("the date must be YYYYMMDD (or YYYY-MM-DD), or a range like 20240101-20240331")
    return text


def check_uid(value: str, what: str) -> str:
    text = (value or "").strip()
    if not (_UID_RE.match(text) and len(text) <= 64):
        raise InputError(f"{what} must be a DICOM UID (digits and dots, at most 64 characters)")
    return text


def _text(item: dict[str, Any], tag: str) -> str:
    values = (item.get(tag) or {}).get("Value") or []
    if not values:
        return ""
    first = values[0]
    if isinstance(first, dict):  # PN: {"Alphabetic": "..."}
        return str(first.get("Alphabetic", ""))
    return "\\".join(str(v) for v in values) if len(values) > 1 else str(first)


def _int(item: dict[str, Any], tag: str) -> int | None:
    text = _text(item, tag)
    try:
        return int(float(text)) if text else None
    except ValueError:
        return None


class _Withheld(logging.Filter):
    """Third-party HTTP log records hold URLs with searched identifiers and original UIDs: withhold their text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        record.msg = f"{record.name}: {record.levelname.lower()} from the PACS connection (details withheld)"
        record.args = ()
        return True


_WITHHELD = _Withheld()


def withhold_http_logs() -> None:
    """Install the filter on the HTTP libraries' loggers (idempotent)."""
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if _WITHHELD not in logger.filters:
            logger.addFilter(_WITHHELD)


# =====================================================================================================
# the client
# =====================================================================================================
class PacsClient:
    """One PACS. Cheap to construct; the HTTP session opens on first use. Not thread-safe: one per worker."""

    def __init__(self, config: PacsConfig) -> None:
        self.config = config
        self._client: Any = None

    # --- plumbing --------------------------------------------------------------------------------------
    @property
    def _dw(self) -> Any:
        if self._client is None:
            import requests
            from dicomweb_client.api import DICOMwebClient

            withhold_http_logs()
            session = requests.Session()
            auth = self.config.auth
            if auth is not None and auth.kind == "basic":
                session.auth = (auth.username, auth.secret.reveal())
            elif auth is not None:
                session.auth = _BearerAuth(auth.secret)
            t = self.config.timeout_s
            self._client = DICOMwebClient(self.config.url, session=session, timeout=(min(t, 10.0), t))
            # one retry after 0.5 s for 408/429/503/504, not dicomweb-client's five with waits up to 8 s
            self._client.set_http_retry_params(retry=True, max_attempts=2, wait_exponential_multiplier=250)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client._session.close()
            self._client = None

    def __enter__(self) -> PacsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _errors(self, action: str, not_found: str | None = None, store: bool = False) -> Iterator[None]:
        """Turn what requests / dicomweb-client raise into typed errors that name the PACS by host only."""
        import requests

        host = self.config.host
        try:
            yield
        except requests.exceptions.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if code == 401:
                raise PacsAuthError(f"the PACS at {host} refused the credentials (HTTP 401) while trying to "
                                    f"{action}: check pacs_auth_file / pacs_auth_env") from None
            if store and code in (400, 403, 409, 413, 415, 422):
                reason = _failed_reason(exc.response)
                raise StowRejectedError(f"the PACS at {host} rejected the report (HTTP {code}{reason}); "
                                        "nothing was stored") from None
            if code == 403:
                raise PacsAuthError(f"the PACS at {host} does not allow this account to {action} (HTTP 403)") \
                    from None
            if code == 404 and not_found:
                raise PacsNotFoundError(not_found) from None
            if code in (408, 504):
                raise PacsTimeoutError(f"the PACS at {host} timed out while trying to {action} (HTTP {code})") \
                    from None
            if code >= 500:
                raise PacsUnavailableError(f"the PACS at {host} failed while trying to {action} (HTTP {code}); "
                                           "try again later or tell its administrator") from None
            raise PacsError(f"the PACS at {host} answered HTTP {code} while trying to {action}") from None
        except requests.exceptions.Timeout:
            raise PacsTimeoutError(f"the PACS at {host} did not answer within {self.config.timeout_s:g} s while "
                                   f"trying to {action}: try again, or raise pacs_timeout_s") from None
        except requests.exceptions.ConnectionError as exc:
            if "timed out" in repr(exc).lower():
                raise PacsTimeoutError(f"the PACS at {host} stopped answering (over {self.config.timeout_s:g} s) "
                                       f"while trying to {action}") from None
            raise PacsUnavailableError(f"cannot reach the PACS at {host} to {action}: is it running, and is "
                                       "pacs_url right?") from None
        except requests.exceptions.RequestException as exc:
            raise PacsUnavailableError(f"the connection to the PACS at {host} failed while trying to {action} "
                                       f"({type(exc).__name__})") from None

    # --- QIDO-RS ----------------------------------------------------------------------------------------
    def find(self, *, accession: str | None = None, patient_id: str | None = None, date: str | None = None,
             modality: str | None = None, limit: int = 50) -> list[StudySummary]:
        """Studies matching every given criterion (exact match; a date may be a range), newest first.

        At least one of accession, patient ID or date is required: the PACS is not browsed wholesale.
        """
        filters: dict[str, str] = {}
        if accession:
            filters["AccessionNumber"] = check_identifier(accession, "the accession number")
        if patient_id:
            filters["PatientID"] = check_identifier(patient_id, "the patient ID")
        if date:
            filters["StudyDate"] = check_date(date)
        if not filters:
            raise InputError("search by accession number, patient ID or study date (modality alone would list "
                             "the whole PACS)")
        if modality:
            mod = modality.strip().upper()
            if not _MODALITY_RE.match(mod):
                raise InputError("the modality must be a DICOM modality code such as CT, MR, CR, DX")
            filters["ModalitiesInStudy"] = mod
        if not 1 <= limit <= 1000:
            raise InputError("the result limit must be 1-1000")
        t0 = time.perf_counter()
        with self._errors("search for studies"):
            found = self._dw.search_for_studies(
                search_filters=filters, limit=limit,
                fields=["StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                        "NumberOfStudyRelatedInstances", "PatientBirthDate", "PatientSex"])
        studies = [StudySummary(
            study_uid=_text(s, "0020000D"), study_date=_text(s, "00080020"), study_time=_text(s, "00080030"),
            accession_number=_text(s, "00080050"),
            modalities=tuple(m for m in _text(s, "00080061").split("\\") if m),
            description=_text(s, "00081030"), patient_name=_text(s, "00100010"), patient_id=_text(s, "00100020"),
            patient_birth_date=_text(s, "00100030"), patient_sex=_text(s, "00100040"),
            series_count=_int(s, "00201206"), instance_count=_int(s, "00201208")) for s in found]
        studies = [s for s in studies if s.study_uid]
        if modality:  # a PACS may ignore ModalitiesInStudy: filter here too
            studies = [s for s in studies if not s.modalities or filters["ModalitiesInStudy"] in s.modalities]
        studies.sort(key=lambda s: (s.study_date, s.study_time), reverse=True)
        log.info("PACS search: %d study(ies) in %.0f ms", len(studies), (time.perf_counter() - t0) * 1000)
        return studies

    def series(self, study_uid: str) -> list[SeriesSummary]:
        """The series of a study, by series number. :class:`PacsNotFoundError` when the study is unknown."""
        study_uid = check_uid(study_uid, "the study UID")
        with self._errors("list the study's series", not_found="the PACS has no study with that UID"):
            found = self._dw.search_for_series(study_uid, fields=["SeriesDescription",
                                                                  "NumberOfSeriesRelatedInstances"])
        out = [SeriesSummary(series_uid=_text(s, "0020000E"), modality=_text(s, "00080060"),
                             number=_int(s, "00200011"), description=_text(s, "0008103E"),
                             instance_count=_int(s, "00201209")) for s in found]
        out = [s for s in out if s.series_uid]
        if not out:
            raise PacsNotFoundError("the PACS has no study with that UID (or the study holds no series)")
        out.sort(key=lambda s: (s.number is None, s.number or 0, s.series_uid))
        return out

    def instances(self, study_uid: str, series_uid: str) -> list[InstanceSummary]:
        """Instance-level QIDO of one series: SOP class and image geometry of each instance."""
        study_uid = check_uid(study_uid, "the study UID")
        series_uid = check_uid(series_uid, "the series UID")
        with self._errors("list the series' instances", not_found="the PACS has no such series in that study"):
            found = self._dw.search_for_instances(
                study_uid, series_uid, get_remaining=True,
                fields=["SOPClassUID", "Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "NumberOfFrames"])
        return [InstanceSummary(sop_instance_uid=_text(i, "00080018"), sop_class_uid=_text(i, "00080016"),
                                rows=_int(i, "00280010"), columns=_int(i, "00280011"),
                                bits_allocated=_int(i, "00280100"), samples_per_pixel=_int(i, "00280002"),
                                frames=_int(i, "00280008")) for i in found if _text(i, "00080018")]

    def plan_series(self, study_uid: str, series_uid: str) -> SeriesPlan:
        """Check a series against the limits from QIDO metadata alone, before any pixel data moves."""
        limit_n, limit_b = self.config.max_instances, self.config.max_series_bytes
        listed = {s.series_uid: s for s in self.series(study_uid)}
        summary = listed.get(series_uid.strip())
        if summary is None:
            raise PacsNotFoundError("the study has no series with that UID: list them with `radconsult pacs get "
                                    "STUDY` or choose from the series list")
        if summary.instance_count is not None and summary.instance_count > limit_n:
            raise SeriesTooLargeError(f"the series holds {summary.instance_count} instances, over the limit of "
                                      f"{limit_n} (RADCONSULT_PACS_MAX_INSTANCES): nothing was retrieved")
        instances = self.instances(study_uid, series_uid)
        images = tuple(i for i in instances if i.is_image)
        skipped = tuple(i for i in instances if not i.is_image)
        plan = SeriesPlan(study_uid.strip(), series_uid.strip(), images, skipped,
                          sum(i.estimated_bytes for i in images))
        if not images:
            what = "; ".join(plan.notes) or "no instances listed"
            raise EmptySeriesError(f"the series holds no image to open ({what}): choose another series")
        if len(images) > limit_n:
            raise SeriesTooLargeError(f"the series holds {len(images)} images, over the limit of {limit_n} "
                                      "(RADCONSULT_PACS_MAX_INSTANCES): nothing was retrieved")
        if plan.estimated_bytes > limit_b:
            raise SeriesTooLargeError(f"the series is about {plan.estimated_bytes / MiB:.1f} MiB of pixel data, "
                                      f"over the limit of {limit_b / MiB:.1f} MiB (RADCONSULT_PACS_MAX_SERIES_BYTES): "
                                      "nothing was retrieved")
        return plan

    # --- WADO-RS ----------------------------------------------------------------------------------------
    def retrieve_series(self, study_uid: str, series_uid: str, dest_dir: Path, *, pseudonymiser: Pseudonymiser,
                        reid: ReidMap | None = None, deidentify: bool = True, plan: SeriesPlan | None = None,
                        verify: Callable[[Path], object] | None = None) -> RetrievedSeries:
        """Retrieve the images of one series into the new (or empty) folder ``dest_dir``; all or nothing.

        Each instance is checked as it arrives (it parses completely, it is not truncated, its pixel data
        is as long as its header says), de-identified (``deidentify=True``: files named by their pseudonymised
        SOP Instance UID; ``False``: the original files, numbered, for a caller that loads them at once with
        ``tools.imaging.load`` and deletes them, as an upload) and written to a private temporary folder.
        When every planned image has arrived, ``verify`` (if given) is called with the temporary folder (the
        callers load it with ``tools.imaging.load``); only then are the originals recorded in ``reid`` and the
        folder renamed to ``dest_dir``. Any failure removes the temporary folder and leaves ``dest_dir`` and
        the map as they were.
        """
        from tools.pacs_reid import OriginalInstance, OriginalPatient

        plan = plan or self.plan_series(study_uid, series_uid)
        dest = Path(dest_dir).expanduser()
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise InputError(f"{dest} exists and is not an empty folder: choose a new output folder")
        parent = dest.resolve().parent
        if not parent.is_dir():
            raise InputError(f"the output folder's parent {parent} does not exist")
        t0 = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=parent))  # mode 0700
        wanted = {i.sop_instance_uid: i for i in plan.images}
        originals: list[OriginalInstance] = []
        patient: OriginalPatient | None = None
        total = 0
        try:
            for n, ds in enumerate(self._iter_images(plan), start=1):
                sop = str(ds.get("SOPInstanceUID", "") or "")
                if sop not in wanted or any(o.sop_instance_uid == sop for o in originals):
                    continue  # not planned (a non-image the PACS sent anyway) or a duplicate part
                _check_instance(ds, n, len(wanted))
                total += _encoded_bytes(ds)
                if total > self.config.max_series_bytes:
                    raise SeriesTooLargeError(f"the series grew past {self.config.max_series_bytes / MiB:.1f} MiB "
                                              "while arriving (RADCONSULT_PACS_MAX_SERIES_BYTES): nothing was kept")
                original = OriginalInstance(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), sop,
                                            str(ds.get("SOPClassUID", "") or wanted[sop].sop_class_uid))
                if original.study_uid != plan.study_uid or original.series_uid != plan.series_uid:
                    raise PartialRetrieveError("the PACS sent an instance of another study or series: "
                                               "nothing was kept")
                patient = patient or OriginalPatient.from_dataset(ds)
                if deidentify:
                    out = _deidentified(pseudonymiser, ds, n, len(wanted))
                    name = f"{out.SOPInstanceUID}.dcm"
                else:
                    out, name = ds, f"{len(originals) + 1:05d}.dcm"
                _write(out, tmp / name)
                originals.append(original)
            missing = len(wanted) - len(originals)
            if missing:
                raise PartialRetrieveError(f"{missing} of {len(wanted)} images did not arrive from the PACS: nothing "
                                           "was kept; try again")
            if verify is not None:
                verify(tmp)
            if reid is not None and patient is not None:
                reid.record(originals, patient, pseudonymiser)
            if dest.exists():
                dest.rmdir()  # empty, checked above
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        seconds = time.perf_counter() - t0
        log.info("PACS retrieve: %d image(s), %.1f MiB in %.2f s (%d non-image skipped)", len(originals),
                 total / MiB, seconds, len(plan.skipped))
        return RetrievedSeries(dest, len(originals), total, round(seconds, 3), deidentify,
                               pseudonymiser.uid(plan.study_uid), pseudonymiser.uid(plan.series_uid), plan.notes)

    def _iter_images(self, plan: SeriesPlan) -> Iterator[Dataset]:
        """The planned images: the whole series in one multipart stream when it holds only images, else
        instance by instance so that the skipped objects never travel."""
        action = "retrieve the series"
        missing = "the PACS no longer has this series"
        if not plan.skipped:
            with self._errors(action, not_found=missing), _parse_errors(len(plan.images)):
                yield from self._dw.iter_series(plan.study_uid, plan.series_uid)
            return
        for inst in plan.images:
            with self._errors(action, not_found=missing), _parse_errors(len(plan.images)):
                ds = self._dw.retrieve_instance(plan.study_uid, plan.series_uid, inst.sop_instance_uid)
            yield ds

    # --- STOW-RS ----------------------------------------------------------------------------------------
    def store(self, datasets: Sequence[Dataset], study_uid: str) -> StoreResult:
        """Store ``datasets`` (all of study ``study_uid``) and confirm each by reading it back with QIDO."""
        study_uid = check_uid(study_uid, "the study UID")
        sops = [str(ds.SOPInstanceUID) for ds in datasets]
        t0 = time.perf_counter()
        with self._errors("store the report", store=True):
            response = self._dw.store_instances(list(datasets), study_instance_uid=study_uid)
        failed = list(response.get("FailedSOPSequence", []) or []) if response is not None else []
        if failed:
            codes = sorted({f"0x{int(item.get('FailureReason', 0)):04X}" for item in failed})
            raise StowRejectedError(f"the PACS at {self.config.host} rejected {len(failed)} object(s) (failure "
                                    f"reason {', '.join(codes)}); nothing more was sent")
        acknowledged = {str(item.get("ReferencedSOPInstanceUID", ""))
                        for item in (response.get("ReferencedSOPSequence", []) or [])} if response is not None else set()
        for sop in sops:
            if acknowledged and sop not in acknowledged:
                raise StowRejectedError(f"the PACS at {self.config.host} did not acknowledge the report")
            with self._errors("confirm the stored report"):
                held = self._dw.search_for_instances(study_uid, search_filters={"SOPInstanceUID": sop})
            if not held:
                raise StowRejectedError(f"the PACS at {self.config.host} acknowledged the report but does not hold "
                                        "it (it may filter what it receives): ask its administrator")
        seconds = time.perf_counter() - t0
        log.info("PACS store: %d object(s) confirmed in %.0f ms", len(sops), seconds * 1000)
        return StoreResult(tuple(sops), round(seconds, 3))


class _BearerAuth:
    """requests auth hook adding ``Authorization: Bearer``: the token stays out of dicomweb-client's headers."""

    def __init__(self, token: Secret) -> None:
        self._token = token

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        return request


def _failed_reason(response: Any) -> str:
    try:
        body = response.json()
        items = (body.get("00081198") or {}).get("Value") or []
        codes = sorted({f"0x{int(i['00081197']['Value'][0]):04X}" for i in items if "00081197" in i})
        return f", failure reason {', '.join(codes)}" if codes else ""
    except Exception:  # noqa: BLE001 - the body is optional detail
        return ""


@contextmanager
def _parse_errors(expected: int) -> Iterator[None]:
    """A part of the multipart answer that pydicom cannot read: the retrieve is abandoned."""
    import requests

    try:
        yield
    except (requests.exceptions.RequestException, PacsError):
        raise
    except Exception as exc:  # pydicom InvalidDicomError, struct errors, truncated parts
        raise PartialRetrieveError(f"an instance of the series ({expected} images) arrived corrupt "
                                   f"({type(exc).__name__}): nothing was kept; try again or tell the PACS "
                                   "administrator") from None


def _check_instance(ds: Dataset, n: int, total: int) -> None:
    """Parse every element and check the pixel data's length: a corrupt or truncated instance fails the whole
    retrieve (a loader over the folder would skip it silently)."""
    from tools.imaging import is_truncated

    where = f"image {n} of {total}"
    try:
        if is_truncated(ds):
            raise ValueError("the instance ends inside an attribute")
        for _ in ds.iterall():  # converts every raw element: malformed values raise here
            pass
        if "PixelData" not in ds:
            raise ValueError("no pixel data")
        ts = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) is not None else None
        if ts is None or not ts.is_compressed:
            rows, cols = int(ds.Rows), int(ds.Columns)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
            expected = (rows * cols * frames * samples * int(ds.BitsAllocated) + 7) // 8
            if len(ds.PixelData) < expected:
                raise ValueError(f"pixel data {len(ds.PixelData)} of {expected} bytes")
    except Exception as exc:  # noqa: BLE001 - every way a part can be broken ends the same way
        raise PartialRetrieveError(f"{where} arrived truncated or corrupt ({type(exc).__name__}): nothing was "
                                   "kept; try again or tell the PACS administrator") from None


def _deidentified(pseudonymiser: Pseudonymiser, ds: Dataset, n: int, total: int) -> Dataset:
    try:
        return pseudonymiser.dataset(ds)
    except PacsError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise PartialRetrieveError(f"image {n} of {total} cannot be de-identified ({type(exc).__name__}): nothing "
                                   "was kept") from None


def _encoded_bytes(ds: Dataset) -> int:
    pixel = ds.get("PixelData")
    return (len(pixel) if pixel is not None else 0) + _HEADER_BYTES


def _write(ds: Dataset, target: Path) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        meta = meta if meta is not None else FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        ds.save_as(fh, enforce_file_format=True)
