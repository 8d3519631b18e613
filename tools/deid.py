"""De-identification: DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile, and
pseudonymous keys.

What this module guarantees for a dataset passed through :func:`deidentify_dataset`:

* every attribute of the Basic Profile table that a loader can meet is removed (X), emptied or
  replaced by a non-identifying value (Z/D), or remapped (U), in the top level and in every
  nested sequence item;
* every private tag is removed, and curves (50xx) and overlay planes (60xx) are removed;
* every Person Name (PN) anywhere is emptied, even when the table does not name it;
* every UID that is not a DICOM well-known UID (root ``1.2.840.10008.``) is replaced by a
  consistent pseudonym: ``2.25.<decimal of a UUID derived by HMAC-SHA256 of the original>``, so
  references between objects (Study, Series, Frame of Reference, referenced SOP instances) stay
  intact across files of one installation;
* dates: kept (``policy.dates == "keep"``, Retain Longitudinal Temporal Information with
  Full Dates, DCM 113106) or shifted per patient by one consistent HMAC-derived offset of
  1..``policy.max_shift_days`` days into the past (Modified Dates, DCM 113107); the birth date is
  always removed, the age is kept (Retain Patient Characteristics, DCM 113108);
* Study / Series Description and Protocol Name are kept but cleaned of every identifying string
  found in the original (Clean Descriptors, DCM 113105), and a final scan removes any such
  string left in any remaining text attribute;
* Patient Identity Removed = YES, De-identification Method and its code sequence are set.

Keys: :func:`patient_key` and :func:`study_key` are HMAC-SHA256 of the raw identifier with a
per-installation secret (``policy.secret_path``, 32 random bytes, hex, created on first use
with mode 0600, atomically), so a key is stable on one installation and irreversible without it.

Every function that needs the secret or the date rule takes a :class:`DeidPolicy` (built from the
settings by ``agent.wiring.deid_policy``); this module never reads the settings itself.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import hmac
import logging
import os
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tools.errors import RadconsultError, SettingsError

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

SECRET_BYTES = 32
DICOM_UID_ROOT = "1.2.840.10008."
DEID_METHOD = "radconsult PS3.15 E Basic Profile"  # LO: at most 64 characters with the suffix

# Codes of CID 7050 (De-identification Method), coding scheme DCM.
CODE_BASIC = ("113100", "Basic Application Confidentiality Profile")
CODE_CLEAN_DESCRIPTORS = ("113105", "Clean Descriptors Option")
CODE_FULL_DATES = ("113106", "Retain Longitudinal Temporal Information Full Dates Option")
CODE_MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
CODE_PATIENT_CHARACTERISTICS = ("113108", "Retain Patient Characteristics Option")


class SecretError(RadconsultError):
    """The per-installation secret cannot be created or read."""


@dataclass(frozen=True)
class DeidPolicy:
    """How identifiers become pseudonyms on this installation.

    ``secret_path``: the installation secret (HMAC key, created on first use, mode 0600).
    ``dates``: "keep" (dates stay, for clinical timelines) or "shift" (every date of a patient moves by
    one consistent pseudo-random offset of 1..``max_shift_days`` days into the past).
    """

    secret_path: Path
    dates: Literal["keep", "shift"] = "keep"
    max_shift_days: int = 365

    def __post_init__(self) -> None:
        if self.dates not in ("keep", "shift"):
            raise SettingsError(f"de-identification dates must be 'keep' or 'shift', not {self.dates!r}")
        if self.max_shift_days <= 0:
            raise SettingsError(f"the largest date shift must be at least 1 day, not {self.max_shift_days}")

    @property
    def shifts_dates(self) -> bool:
        return self.dates == "shift"


# --- the per-installation secret -------------------------------------------------------------------
_secret_cache: dict[tuple[str, int, int], bytes] = {}


def installation_secret(policy: DeidPolicy) -> bytes:
    """The 32-byte HMAC key of this installation, created at ``policy.secret_path`` on first use.

    Creation is atomic: the key is written to a private temporary file (mode 0600) and hard-linked
    into place, which fails if another process got there first; that process's key is then used.
    """
    path = Path(policy.secret_path)
    try:
        st = path.stat()
    except FileNotFoundError:
        _create_secret(path)
        st = path.stat()
    except OSError as exc:
        raise SecretError(f"cannot read the installation secret: {exc.strerror}") from exc
    cache_key = (str(path), st.st_ino, st.st_mtime_ns)
    cached = _secret_cache.get(cache_key)
    if cached is not None:
        return cached
    if st.st_mode & 0o077:
        log.warning("the installation secret is readable by other users; run: chmod 600 on it")
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, ValueError) as exc:
        raise SecretError("the installation secret is unreadable or corrupt; restore it from a backup "
                          "(a new one would change every patient key)") from exc
    if len(key) != SECRET_BYTES:
        raise SecretError(f"the installation secret has {len(key)} bytes, expected {SECRET_BYTES}; "
                          "restore it from a backup")
    _secret_cache.clear()
    _secret_cache[cache_key] = key
    return key


def _create_secret(path: Path) -> None:
    hint = ("make the data directory writable, or set RADCONSULT_DATA_DIR to a writable place (move an "
            "existing secret.key with it: a new secret changes every patient key)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SecretError(f"cannot create the data directory {path.parent} for the installation secret: "
                          f"{exc.strerror or exc}; {hint}") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        _write_new_secret(path, tmp)
    except OSError as exc:
        raise SecretError(f"cannot create the installation secret in {path.parent}: {exc.strerror or exc}; "
                          f"{hint}") from None


def _write_new_secret(path: Path, tmp: Path) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_bytes(SECRET_BYTES).hex() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic, never overwrites
            log.info("created a new installation secret")
        except FileExistsError:
            pass  # another process won the race: use its key
        except OSError:
            # Filesystems without hard links: exclusive create of the final name is still race-free
            # for creation; a reader may see it only after the rename below completes.
            if not path.exists():
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _digest(policy: DeidPolicy, purpose: str, value: str) -> bytes:
    msg = purpose.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
    return hmac.new(installation_secret(policy), msg, hashlib.sha256).digest()


# --- public keys -------------------------------------------------------------------------------------
def patient_key(raw_patient_id: str, policy: DeidPolicy) -> str:
    """Pseudonymous patient key, ``"P-"`` + 16 hex characters (64 bits of HMAC-SHA256).

    The raw id is stripped of surrounding blanks (DICOM pads values), so ``"123 "`` and ``"123"`` match.
    """
    raw = (raw_patient_id or "").strip()
    if not raw:
        raise ValueError("patient_key needs a non-empty patient identifier")
    return "P-" + _digest(policy, "patient", raw).hex()[:16]


def study_key(raw_study_uid: str, policy: DeidPolicy) -> str:
    """Pseudonymous study key, ``"S-"`` + 16 hex characters, from the original StudyInstanceUID."""
    raw = (raw_study_uid or "").strip().rstrip("\x00")
    if not raw:
        raise ValueError("study_key needs a non-empty study identifier")
    return "S-" + _digest(policy, "study", raw).hex()[:16]


def remap_uid(uid: str, policy: DeidPolicy) -> str:
    """Consistent pseudonymous UID under ``2.25.`` (a UUID v4-shaped integer derived by HMAC).

    DICOM well-known UIDs (SOP classes, transfer syntaxes: root 1.2.840.10008.) are returned unchanged.
    """
    raw = str(uid).strip().rstrip("\x00")
    if not raw or raw.startswith(DICOM_UID_ROOT):
        return raw
    return "2.25." + str(uuid.UUID(bytes=_digest(policy, "uid", raw)[:16], version=4).int)


def date_shift_days(raw_patient_id: str, policy: DeidPolicy) -> int:
    """Days added to every date of this patient when ``policy.dates == "shift"``: -max..-1 (never 0)."""
    raw = (raw_patient_id or "").strip()
    n = int.from_bytes(_digest(policy, "dateshift", raw)[:8], "big")
    return -(1 + n % policy.max_shift_days)


def shift_date(value: str, days: int) -> str:
    """Shift a DA value (YYYYMMDD, also the legacy YYYY.MM.DD) by ``days``; '' if it cannot be parsed."""
    text = str(value).strip().replace(".", "")
    if len(text) != 8 or not text.isdigit():
        return ""
    try:
        d = _dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return ""
    return (d + _dt.timedelta(days=days)).strftime("%Y%m%d")


def shift_datetime(value: str, days: int) -> str:
    """Shift the date part of a DT value, keeping time and UTC offset; '' when the date is partial."""
    text = str(value).strip()
    if len(text) < 8:
        return ""
    shifted = shift_date(text[:8], days)
    return shifted + text[8:] if shifted else ""


def patient_identity(ds: Dataset) -> str | None:
    """The raw identity a patient key is derived from: PatientID, else name + birth date; None if absent."""
    pid = str(ds.get("PatientID", "") or "").strip()
    if pid:
        return pid
    name = str(ds.get("PatientName", "") or "").strip()
    birth = str(ds.get("PatientBirthDate", "") or "").strip()
    if name:
        return f"name:{name}|{birth}"
    return None


# --- the profile table ---------------------------------------------------------------------------------
# Actions: X remove, Z empty (or a pseudonym where noted), D dummy value, K keep (with cleaning).
# Keywords from PS3.15 Table E.1-1 that a loader can meet in image objects.
_REMOVE = {
    # patient
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers", "PatientTelecomInformation",
    "RegionOfResidence", "CountryOfResidence", "MilitaryRank", "BranchOfService", "EthnicGroup",
    "EthnicGroupCodeSequence", "Occupation", "PatientReligiousPreference", "AdditionalPatientHistory",
    "PatientComments", "PatientBirthTime", "PatientBirthDateInAlternativeCalendar",
    "PatientDeathDateInAlternativeCalendar", "PatientAlternativeCalendar", "MedicalRecordLocator",
    "MedicalAlerts", "Allergies", "SmokingStatus", "PregnancyStatus", "LastMenstrualDate",
    "SpecialNeeds", "PatientState", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "PatientInsurancePlanCodeSequence", "PatientPrimaryLanguageCodeSequence",
    "PatientPrimaryLanguageModifierCodeSequence", "ResponsiblePerson", "ResponsiblePersonRole",
    "ResponsibleOrganization", "PatientInstitutionResidence", "ReferencedPatientSequence",
    "ReferencedPatientAliasSequence", "ReferencedPatientPhotoSequence", "PersonAddress",
    "PersonTelephoneNumbers", "PersonTelecomInformation", "PatientTransportArrangements",
    "CurrentPatientLocation", "AdmissionID", "IssuerOfAdmissionID", "IssuerOfAdmissionIDSequence",
    "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "ServiceEpisodeID",
    "ServiceEpisodeDescription", "IssuerOfServiceEpisodeID", "IssuerOfServiceEpisodeIDSequence",
    "VisitComments", "PatientSexNeutered", "PatientSpeciesDescription", "PatientBreedDescription",
    "BreedRegistrationSequence", "InsurancePlanIdentification",
    # institution, staff and devices
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "InstitutionalDepartmentTypeCodeSequence", "StationName", "DeviceSerialNumber", "PlateID",
    "DetectorID", "GantryID", "CassetteID", "GeneratorID", "SourceSerialNumber",
    "DeviceDescription", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianName",
    "ConsultingPhysicianIdentificationSequence", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "OperatorsName", "OperatorIdentificationSequence",
    "RequestingPhysician", "RequestingPhysicianIdentificationSequence", "ScheduledPerformingPhysicianName",
    "ScheduledPerformingPhysicianIdentificationSequence", "OrderEnteredBy", "OrderEntererLocation",
    "OrderCallbackPhoneNumber", "OrderCallbackTelecomInformation", "PerformedStationName",
    "PerformedStationAETitle", "PerformedLocation", "ScheduledStationName", "ScheduledStationAETitle",
    "ScheduledProcedureStepLocation", "PerformedStationNameCodeSequence",
    "ScheduledStationNameCodeSequence", "ScheduledStationGeographicLocationCodeSequence",
    "PerformedStationGeographicLocationCodeSequence", "StationAETitle",
    # request, procedure and free text
    "RequestAttributesSequence", "RequestedProcedureID", "RequestedProcedureDescription",
    "RequestedProcedureComments", "RequestedContrastAgent", "RequestingService",
    "ReasonForStudy", "ReasonForTheRequestedProcedure", "ReasonForRequestedProcedureCodeSequence",
    "ImagingServiceRequestComments", "ScheduledProcedureStepID", "ScheduledProcedureStepDescription",
    "PerformedProcedureStepID", "PerformedProcedureStepDescription", "CommentsOnThePerformedProcedureStep",
    "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence", "ImageComments", "FrameComments", "StudyComments",
    "AcquisitionComments", "InterpretationText", "InterpretationDiagnosisDescription",
    "ResultsComments", "DerivationDescription", "AcquisitionDeviceProcessingDescription",
    "ContributionDescription", "TextString", "TextComments", "TopicTitle", "TopicAuthor",
    "TopicSubject", "TopicKeywords", "DischargeDiagnosisDescription",
    "IdentifyingComments", "Arbitrary", "ContentSequence",
    "DigitalSignaturesSequence", "MACParametersSequence", "OriginalAttributesSequence",
    "ModifiedAttributesSequence", "TimezoneOffsetFromUTC", "DataSetTrailingPadding",
    "DistributionName", "DistributionAddress",
    "DestinationAE", "SourceApplicationEntityTitle",
    "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle", "ClinicalTrialSponsorName",
    "ReviewerName", "VerifyingOrganization", "VerifyingObserverIdentificationCodeSequence",
    "PersonIdentificationCodeSequence", "HumanPerformerOrganization", "HumanPerformerName",
    "ScheduledHumanPerformersSequence", "ActualHumanPerformersSequence", "PreMedication",
    "ScheduledPatientInstitutionResidence", "LabelText", "AnnotationGroupDescription",
}

# Z: keep the attribute (type 2 in most IODs) with an empty value.
_EMPTY = {
    "AccessionNumber", "StudyID", "ReferringPhysicianName", "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest", "ContentCreatorName", "PatientBirthDate",
    "VerifyingObserverName", "PersonName", "ClinicalTrialSubjectID",
    "ClinicalTrialSubjectReadingID", "ClinicalTrialSiteName", "ClinicalTrialSiteID",
}

# Descriptors (Study/Series Description, Protocol Name, ...) are kept and, like every remaining text
# attribute, cleaned of the identifying strings found in the original (Clean Descriptors option).

# Attributes whose values identify a patient, collected before cleaning to scrub residual copies.
IDENTIFYING_KEYWORDS = (
    "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "PatientBirthDate", "PatientAddress", "PatientTelephoneNumbers",
    "AccessionNumber", "StudyID", "MedicalRecordLocator", "AdmissionID", "InstitutionName",
    "InstitutionAddress", "InstitutionalDepartmentName", "ReferringPhysicianName", "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy", "OperatorsName", "RequestingPhysician", "PhysiciansOfRecord",
    "DeviceSerialNumber", "StationName", "ResponsiblePerson", "Occupation", "EthnicGroup",
    "IssuerOfPatientID", "PlacerOrderNumberImagingServiceRequest", "FillerOrderNumberImagingServiceRequest",
    "RequestedProcedureID", "ScheduledProcedureStepID", "PerformedProcedureStepID", "ServiceEpisodeID",
    "RegionOfResidence", "CountryOfResidence", "MilitaryRank", "BranchOfService", "PatientComments",
    "AdditionalPatientHistory", "ImageComments", "StudyComments", "PlateID", "DetectorID",
    "CassetteID", "GantryID",
)

# Text VRs scanned for residual identifiers after the table has been applied.
_TEXT_VRS = {"LO", "SH", "LT", "ST", "UT", "UC", "PN"}
# Device descriptions are not about the patient and often share words with an institution's name.
_SCAN_EXEMPT = {"Manufacturer", "ManufacturerModelName", "SoftwareVersions", "ContrastBolusAgent",
                "ConvolutionKernel", "CodingSchemeDesignator", "CodeValue", "CodeMeaning"}
_MIN_SCRUB_LEN = 3  # shorter fragments ("M", "01") would destroy ordinary values


def identifying_values(ds: Dataset, recursive: bool = True) -> set[str]:
    """Every non-trivial identifying string in ``ds`` (and, if ``recursive``, its sequences): name
    components, IDs, ... Used to clean kept descriptors. ``recursive=False`` reads only the top-level
    identifying attributes, without touching (and converting) the others: the loader's fast path.
    """
    found: set[str] = set()

    def add(value: object) -> None:
        items = value if isinstance(value, list | tuple) or _is_multivalue(value) else [value]
        for item in items:
            text = str(item).strip()
            if not text:
                continue
            parts = {text} | {p.strip() for p in re.split(r"[\^=]", text)}
            found.update(p for p in parts if len(p) >= _MIN_SCRUB_LEN and not _generic(p))

    def visit(d: Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value or ():
                    visit(item)
            elif (elem.keyword in IDENTIFYING_KEYWORDS or elem.VR == "PN") and elem.value not in (None, ""):
                add(elem.value)

    if recursive:
        visit(ds)
    else:
        for keyword in IDENTIFYING_KEYWORDS:
            value = ds.get(keyword)
            if value not in (None, ""):
                add(value)
    return found


def _is_multivalue(value: object) -> bool:
    from pydicom.multival import MultiValue

    return isinstance(value, MultiValue)


_GENERIC = {"----", "none", "unknown", "anonymous", "anon", "n/a", "na", "0000", "000000000"}


def _generic(text: str) -> bool:
    t = text.lower()
    return t in _GENERIC or set(t) <= set("-_0. ")


def scrub_text(text: str, identifying: Iterable[str]) -> str:
    """Remove every identifying string from ``text`` (case-insensitive); collapses leftover blanks."""
    out = text
    for value in sorted(identifying, key=len, reverse=True):
        if value and value.lower() in out.lower():
            out = re.sub(re.escape(value), "", out, flags=re.IGNORECASE)
    if out != text:
        out = re.sub(r"\s{2,}", " ", out).strip(" ^-_,;:")
    return out


# --- the de-identifier ---------------------------------------------------------------------------------
def deidentify_dataset(ds: Dataset, policy: DeidPolicy) -> Dataset:
    """A de-identified copy of ``ds`` (the input is not modified). Pixel data is copied unchanged.

    Burned-in annotation is not removed from pixels: Burned In Annotation stays in the output so a
    reader can act on it, and :func:`tools.imaging.load` warns about it.
    """
    from pydicom.dataset import Dataset as _Dataset
    from pydicom.sequence import Sequence

    out = copy.deepcopy(ds)
    identity = patient_identity(ds)
    pkey = patient_key(identity, policy) if identity else None
    days = date_shift_days(identity or "", policy) if policy.shifts_dates else 0
    identifying = identifying_values(ds)

    age = derived_age(ds)
    if age and not str(ds.get("PatientAge", "") or "").strip():
        out.PatientAge = age

    out.remove_private_tags()
    _clean(out, policy, days, identifying)

    if hasattr(out, "file_meta") and out.file_meta is not None:
        meta = out.file_meta
        if "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = remap_uid(meta.MediaStorageSOPInstanceUID, policy)
        for kw in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                   "ReceivingApplicationEntityTitle", "PrivateInformationCreatorUID", "PrivateInformation"):
            if kw in meta:
                delattr(meta, kw)

    out.PatientName = pkey or ""
    out.PatientID = pkey or ""
    out.PatientIdentityRemoved = "YES"
    method = [DEID_METHOD]
    codes = [CODE_BASIC, CODE_CLEAN_DESCRIPTORS, CODE_PATIENT_CHARACTERISTICS]
    if policy.shifts_dates:
        codes.append(CODE_MODIFIED_DATES)
        method.append("dates shifted per patient")
        out.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        codes.append(CODE_FULL_DATES)
        method.append("dates kept")
        out.LongitudinalTemporalInformationModified = "UNMODIFIED"
    out.DeidentificationMethod = "; ".join(method)[:64]
    seq = []
    for value, meaning in codes:
        item = _Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        seq.append(item)
    out.DeidentificationMethodCodeSequence = Sequence(seq)
    return out


def _clean(ds: Dataset, policy: DeidPolicy, days: int, identifying: set[str]) -> None:
    for elem in list(ds):
        tag = elem.tag
        group = tag.group
        kw = elem.keyword
        if 0x5000 <= group <= 0x50FF or (0x6000 <= group <= 0x60FF and group % 2 == 0):
            # curves, and whole overlay planes: the Basic Profile removes Overlay Data and Comments, and a
            # plane without its data would be an invalid module
            del ds[tag]
            continue
        if kw in _REMOVE:
            del ds[tag]
            continue
        if kw == "PatientID":  # nested copies (e.g. in referenced or directory records) get the key too
            raw = str(elem.value or "").strip()
            elem.value = patient_key(raw, policy) if raw else ""
            continue
        if kw in _EMPTY:
            elem.value = None if elem.VR == "SQ" else ""
            continue
        vr = elem.VR
        if vr == "SQ":
            for item in elem.value or ():
                _clean(item, policy, days, identifying)
            continue
        if elem.value is None or elem.value == "":
            continue
        if vr == "UI":
            if _is_multivalue(elem.value):
                elem.value = [remap_uid(v, policy) for v in elem.value]
            else:
                elem.value = remap_uid(elem.value, policy)
        elif vr == "PN":
            elem.value = ""
        elif vr == "DA" and days:
            elem.value = ([shift_date(v, days) for v in elem.value] if _is_multivalue(elem.value)
                          else shift_date(elem.value, days))
        elif vr == "DT" and days:
            elem.value = ([shift_datetime(v, days) for v in elem.value] if _is_multivalue(elem.value)
                          else shift_datetime(elem.value, days))
        elif vr in _TEXT_VRS and identifying and kw not in _SCAN_EXEMPT:
            if _is_multivalue(elem.value):
                elem.value = [scrub_text(str(v), identifying) for v in elem.value]
            elif isinstance(elem.value, str):
                elem.value = scrub_text(elem.value, identifying)


# --- ages -------------------------------------------------------------------------------------------------
def parse_age_string(value: object) -> float | None:
    """DICOM AS ("045Y", "006M", "003W", "010D") to years; None if malformed."""
    text = str(value or "").strip().upper()
    m = re.fullmatch(r"(\d{1,3})\s*([DWMY]?)", text)
    if not m:
        return None
    n = int(m.group(1))
    unit = m.group(2) or "Y"
    return {"D": n / 365.25, "W": n * 7 / 365.25, "M": n / 12.0, "Y": float(n)}[unit]


def age_years_from_dates(birth: object, on: object) -> float | None:
    """Whole-day age in years between a DA birth date and a DA reference date; None if unusable."""
    def parse(v: object) -> _dt.date | None:
        t = str(v or "").strip().replace(".", "")
        if len(t) != 8 or not t.isdigit():
            return None
        try:
            return _dt.date(int(t[:4]), int(t[4:6]), int(t[6:8]))
        except ValueError:
            return None

    b, d = parse(birth), parse(on)
    if b is None or d is None or d < b:
        return None
    return (d - b).days / 365.25


def derived_age(ds: Dataset) -> str | None:
    """An AS value computed from birth date vs study (or series/acquisition/content) date, else None."""
    birth = ds.get("PatientBirthDate", "")
    for kw in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        years = age_years_from_dates(birth, ds.get(kw, ""))
        if years is not None:
            if years >= 2:
                return f"{min(int(years), 999):03d}Y"
            months = int(years * 12)
            return f"{months:03d}M" if months >= 1 else f"{int(years * 365.25):03d}D"
    return None
