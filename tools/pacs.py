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

Limits: a series is checked against ``max_instances`` and ``max_series_bytes`` from the QIDO metadata (the
series' instance count; rows x columns x bits x frames of a sample instance, or of every instance when the
sample is not an image) before any pixel data is requested, and again as the bytes arrive. Non-image
instances in a series (structured reports, presentation states, key object selections, ...) are dropped on
arrival and never written: :attr:`RetrievedSeries.notes` says what was skipped. A retrieve is all or
nothing: files are written to a private temporary folder beside ``dest_dir`` and renamed into place only
when every instance has arrived intact.

The module is split in parts: :mod:`tools.pacs_config` (connection, credential), :mod:`tools.pacs_models`
(results, input checks), :mod:`tools.pacs_instances` (checking and writing instances), :mod:`tools.pacs_sop`
(which objects are images) and :mod:`tools.pacs_reid` (the re-identification map).
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.errors import (
    EmptySeriesError,
    InputError,
    PacsAuthError,
    PacsError,
    PacsNotFoundError,
    PacsTimeoutError,
    PacsUnavailableError,
    PartialRetrieveError,
    RadconsultError,
    SeriesTooLargeError,
    StowRejectedError,
)
from tools.pacs_config import MiB, PacsAuth, PacsConfig, Secret
from tools.pacs_instances import (
    PIXEL_KEYWORDS,
    check_instance,
    deidentified,
    encoded_bytes,
    parse_errors,
    write,
)
from tools.pacs_models import (
    InstanceSummary,
    RetrievedSeries,
    SeriesPlan,
    SeriesSummary,
    StoreResult,
    StudySummary,
    check_date,
    check_identifier,
    check_uid,
    skipped_notes,
)
from tools.pacs_sop import instance_kind, is_image_kind

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

    from tools.pacs_reid import Pseudonymiser, ReidMap

__all__ = ["InstanceSummary", "PacsAuth", "PacsClient", "PacsConfig", "RetrievedSeries", "Secret", "SeriesPlan",
           "SeriesSummary", "StoreResult", "StudySummary", "check_date", "check_identifier", "check_uid",
           "withhold_logs"]

log = logging.getLogger(__name__)

_QUIET_LOGGERS = ("dicomweb_client", "dicomweb_client.api", "dicomweb_client.web", "dicomweb_client.session_utils",
                  "urllib3.connectionpool", "requests", "retrying")   # (and any other logger of these packages)
_MODALITY_RE = re.compile(r"^[A-Z0-9]{1,16}$")


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


def withhold_logs(*packages: str) -> None:
    """Install the filter on the loggers of ``packages`` (every logger named ``package`` or ``package.*`` that
    exists now: call it after importing them), and on the HTTP libraries' loggers. Idempotent."""
    names = set(_QUIET_LOGGERS)
    for name in list(logging.root.manager.loggerDict):
        if any(name == p or name.startswith(p + ".") for p in (*packages, "dicomweb_client", "urllib3")):
            names.add(name)
    for name in names:
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

            withhold_logs()
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
        from retrying import RetryError  # dicomweb-client's retry loop gives up with it (408/429/503/504)

        host = self.config.host
        try:
            yield
        except RetryError as exc:
            value = exc.last_attempt.value
            code = getattr(value, "status_code", None) if not exc.last_attempt.has_exception else None
            if code in (408, 504):
                raise PacsTimeoutError(f"the PACS at {host} timed out while trying to {action} (HTTP {code}, "
                                       "asked twice)") from None
            raise PacsUnavailableError(f"the PACS at {host} is unavailable (HTTP {code or '?'}, asked twice) while "
                                       f"trying to {action}: try again later or tell its administrator") from None
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
        except requests.exceptions.InvalidJSONError as exc:
            raise PacsError(f"the PACS at {host} gave an answer that is not DICOMweb while trying to {action} "
                            f"({type(exc).__name__}): is pacs_url its DICOMweb root?") from None
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
        except RadconsultError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # not DICOM JSON / multipart
            raise PacsError(f"the PACS at {host} gave an answer that is not DICOMweb while trying to {action} "
                            f"({type(exc).__name__}): is pacs_url its DICOMweb root?") from None

    # --- QIDO-RS ----------------------------------------------------------------------------------------
    def echo(self) -> float:
        """A connectivity and credentials check (``radconsult doctor``): one QIDO study search asking for at
        most one result, whose content is discarded. Returns the round trip in milliseconds."""
        t0 = time.perf_counter()
        with self._errors("answer a test search"):
            self._dw.search_for_studies(limit=1, fields=["StudyDate"])
        return (time.perf_counter() - t0) * 1000

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

    def body_parts(self, study_uid: str) -> tuple[str, ...]:
        """The Body Part Examined values of a study's series, upper case ((): none says); series-level QIDO."""
        study_uid = check_uid(study_uid, "the study UID")
        with self._errors("list the study's series", not_found="the PACS has no study with that UID"):
            found = self._dw.search_for_series(study_uid, fields=["BodyPartExamined"])
        return tuple(sorted({_text(s, "00180015").strip().upper() for s in found} - {""}))

    def instances(self, study_uid: str, series_uid: str, limit: int | None = None) -> list[InstanceSummary]:
        """Instance-level QIDO of one series: SOP class and image geometry of each instance (``limit``: the
        first few only; a PACS may read every file to answer the full listing)."""
        study_uid = check_uid(study_uid, "the study UID")
        series_uid = check_uid(series_uid, "the series UID")
        with self._errors("list the series' instances", not_found="the PACS has no such series in that study"):
            found = self._dw.search_for_instances(
                study_uid, series_uid, get_remaining=limit is None, limit=limit,
                fields=["SOPClassUID", "Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "NumberOfFrames"])
        return [InstanceSummary(sop_instance_uid=_text(i, "00080018"), sop_class_uid=_text(i, "00080016"),
                                rows=_int(i, "00280010"), columns=_int(i, "00280011"),
                                bits_allocated=_int(i, "00280100"), samples_per_pixel=_int(i, "00280002"),
                                frames=_int(i, "00280008")) for i in found if _text(i, "00080018")]

    def plan_series(self, study_uid: str, series_uid: str) -> SeriesPlan:
        """Check a series against the limits from QIDO metadata alone, before any pixel data moves.

        The instance count comes from the series-level QIDO; the size from one sample instance times the count
        (every instance is listed instead when the sample or the series' modality is not an image's, or the
        count is unknown). The
        retrieve checks the bytes again as they arrive.
        """
        limit_n, limit_b = self.config.max_instances, self.config.max_series_bytes
        listed = {s.series_uid: s for s in self.series(study_uid)}
        summary = listed.get(series_uid.strip())
        if summary is None:
            raise PacsNotFoundError("the study has no series with that UID: list them with `radconsult pacs series "
                                    "STUDY`")
        count = summary.instance_count
        if count is not None and count > limit_n:
            raise SeriesTooLargeError(f"the series holds {count} instances, over the limit of {limit_n} "
                                      "(RADCONSULT_PACS_MAX_INSTANCES): nothing was retrieved")
        sample = self.instances(study_uid, series_uid, limit=1)
        every: tuple[InstanceSummary, ...] = ()
        if count is None or not summary.likely_images or not sample or not sample[0].is_image:
            every = tuple(self.instances(study_uid, series_uid))
            images = [i for i in every if i.is_image]
            count, estimated = len(every), sum(i.estimated_bytes for i in images)
            if not images:
                notes = "; ".join(skipped_notes(Counter(i.kind for i in every))) or "no instances listed"
                raise EmptySeriesError(f"the series holds no image to open ({notes}): choose another series")
            if len(images) > limit_n:
                raise SeriesTooLargeError(f"the series holds {len(images)} images, over the limit of {limit_n} "
                                          "(RADCONSULT_PACS_MAX_INSTANCES): nothing was retrieved")
        else:
            estimated = sample[0].estimated_bytes * count
        if estimated > limit_b:
            raise SeriesTooLargeError(f"the series is about {estimated / MiB:.1f} MiB of pixel data, over the limit "
                                      f"of {limit_b / MiB:.1f} MiB (RADCONSULT_PACS_MAX_SERIES_BYTES): nothing was "
                                      "retrieved")
        return SeriesPlan(study_uid.strip(), series_uid.strip(), count, estimated, every)

    # --- WADO-RS ----------------------------------------------------------------------------------------
    def retrieve_series(self, study_uid: str, series_uid: str, dest_dir: Path, *, pseudonymiser: Pseudonymiser,
                        reid: ReidMap | None = None, deidentify: bool = True, plan: SeriesPlan | None = None,
                        verify: Callable[[Path], object] | None = None) -> RetrievedSeries:
        """Retrieve the images of one series into the new (or empty) folder ``dest_dir``; all or nothing.

        The series arrives in one multipart stream. Non-image instances are dropped as they arrive (counted in
        the notes). Each image is checked (not truncated, pixel data as long as its header says, every element
        writable), de-identified (``deidentify=True``: files named by their pseudonymised SOP Instance UID;
        ``False``: the original files, numbered, for a caller that loads them at once with
        ``tools.imaging.load`` and deletes them, as an upload) and written to a private temporary folder.
        When every instance the plan expects has arrived, ``verify`` (if given) is called with the temporary
        folder (the callers load it with ``tools.imaging.load``); only then are the originals recorded in
        ``reid`` and the folder renamed to ``dest_dir``. Any failure removes the temporary folder and leaves
        ``dest_dir`` and the map as they were.
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
        originals: list[OriginalInstance] = []
        seen: set[str] = set()
        skipped: Counter[str] = Counter()
        patient: OriginalPatient | None = None
        total = 0
        expected = plan.expected
        try:
            for ds in self._iter_series(plan):
                sop = str(ds.get("SOPInstanceUID", "") or "")
                if not sop or sop in seen:
                    continue  # a duplicate part
                seen.add(sop)
                n = len(seen)
                kind = instance_kind(str(ds.get("SOPClassUID", "") or ""), has_rows="Rows" in ds)
                if not is_image_kind(kind) or not any(k in ds for k in PIXEL_KEYWORDS):
                    skipped[kind if not is_image_kind(kind) else "object without pixel data"] += 1
                    continue
                check_instance(ds, n, expected)
                total += encoded_bytes(ds)
                if total > self.config.max_series_bytes:
                    raise SeriesTooLargeError(f"the series grew past {self.config.max_series_bytes / MiB:.1f} MiB "
                                              "while arriving (RADCONSULT_PACS_MAX_SERIES_BYTES): nothing was kept")
                if len(originals) >= self.config.max_instances:
                    raise SeriesTooLargeError(f"the series holds more than {self.config.max_instances} images "
                                              "(RADCONSULT_PACS_MAX_INSTANCES): nothing was kept")
                original = OriginalInstance(str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", "")),
                                            sop, str(ds.get("SOPClassUID", "")))
                if original.study_uid != plan.study_uid or original.series_uid != plan.series_uid:
                    raise PartialRetrieveError("the PACS sent an instance of another study or series: "
                                               "nothing was kept")
                patient = patient or OriginalPatient.from_dataset(ds)
                if deidentify:
                    out = deidentified(pseudonymiser, ds, n, expected)
                    name = f"{out.SOPInstanceUID}.dcm"
                else:
                    out, name = ds, f"{len(originals) + 1:05d}.dcm"
                write(out, tmp / name, n, expected)
                originals.append(original)
            if expected is not None and len(seen) < expected:
                raise PartialRetrieveError(f"{expected - len(seen)} of {expected} instances did not arrive from the "
                                           "PACS: nothing was kept; try again")
            if not originals:
                notes = "; ".join(skipped_notes(skipped)) or "nothing arrived"
                raise EmptySeriesError(f"the series holds no image to open ({notes}): choose another series")
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
                 total / MiB, seconds, sum(skipped.values()))
        return RetrievedSeries(dest, len(originals), total, round(seconds, 3), deidentify,
                               pseudonymiser.uid(plan.study_uid), pseudonymiser.uid(plan.series_uid),
                               skipped_notes(skipped), sum(skipped.values()))

    def _iter_series(self, plan: SeriesPlan) -> Iterator[Dataset]:
        """The series in one multipart stream (WADO-RS), parsed part by part as it arrives."""
        with self._errors("retrieve the series", not_found="the PACS no longer has this series"), \
                parse_errors(plan.expected):
            yield from self._dw.iter_series(plan.study_uid, plan.series_uid)

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
