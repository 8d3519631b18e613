"""`radconsult pacs find | series | get | send | forget`: the PACS over DICOMweb (see :mod:`agent.pacs`).

``find`` lists studies by accession number, patient ID and/or study date (modality narrows): the patient
columns are shown to the clinician to confirm the patient, the audit log keeps only hashes of what was
typed. ``get STUDY --out DIR`` writes the chosen series as de-identified DICOM files (all or nothing) and
records the originals in the re-identification map. ``send CASE/vN`` files a signed summary in the PACS
under the original study, once. ``forget STUDY`` removes a study from the re-identification map.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.errors import InputError

if TYPE_CHECKING:
    from agent.settings import Settings
    from tools.pacs import PacsClient, SeriesSummary


def register(sub: argparse._SubParsersAction) -> None:
    pacs = sub.add_parser("pacs", help="find, open and send back studies in the PACS (DICOMweb)")
    ps = pacs.add_subparsers(dest="pacs_command", metavar="ACTION")

    f = ps.add_parser("find", help="search studies by accession number, patient ID and/or date")
    f.add_argument("--accession", metavar="A", help="accession number (exact)")
    f.add_argument("--patient-id", metavar="P", help="patient ID (exact)")
    f.add_argument("--date", metavar="D", help="study date YYYYMMDD or YYYY-MM-DD, or a range FROM-TO")
    f.add_argument("--modality", metavar="M", help="only studies with this modality (CT, MR, CR, ...)")
    f.add_argument("--limit", type=int, default=50, help="most studies listed (default 50)")
    f.add_argument("--current", metavar="STUDY", help="with --patient-id: the current study, whose priors (same "
                                                       "modality and body part, earlier) are marked (default: the "
                                                       "newest found)")
    f.add_argument("--json", action="store_true", help="machine-readable output")
    f.set_defaults(func=cmd_find)

    s = ps.add_parser("series", help="list the series of a study (instance counts, modalities)")
    s.add_argument("study", metavar="STUDY", help="Study Instance UID (from `pacs find`)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_series)

    g = ps.add_parser("get", help="retrieve a series as de-identified DICOM files")
    g.add_argument("study", metavar="STUDY", help="Study Instance UID (from `pacs find`)")
    g.add_argument("--series", metavar="S", help="Series Instance UID, or 'all' (needed when the study has "
                                                 "several image series)")
    g.add_argument("--out", metavar="DIR", required=True, help="a new (or empty) folder")
    g.add_argument("--json", action="store_true", help="machine-readable output")
    g.set_defaults(func=cmd_get)

    d = ps.add_parser("send", help="send a signed summary to the PACS, filed under its original study")
    d.add_argument("report", metavar="REPORT_ID", help="CASE/vN: the case id and the signed version")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.set_defaults(func=cmd_send)

    x = ps.add_parser("forget", help="remove a study from the re-identification map")
    x.add_argument("study", metavar="STUDY", help="the study's original or pseudonymised Study Instance UID")
    x.set_defaults(func=cmd_forget)

    pacs.set_defaults(func=lambda args, settings: (pacs.print_help(), 1)[1])


def _client(settings: Settings) -> PacsClient:
    from agent.wiring import pacs_config
    from tools.pacs import PacsClient

    return PacsClient(pacs_config(settings))


def _audit(settings: Settings) -> Any:
    from agent.audit import AuditLog

    return AuditLog.from_settings(settings)


# --- find ----------------------------------------------------------------------------------------------
def cmd_find(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json
    from agent.pacs import audit_find, study_roles_for
    from tools.pacs import check_uid

    if args.current and not args.patient_id:
        raise InputError("--current marks the priors of a patient's study: search with --patient-id")
    current = check_uid(args.current, "--current") if args.current else None
    with _client(settings) as client:
        studies = client.find(accession=args.accession, patient_id=args.patient_id, date=args.date,
                              modality=args.modality, limit=args.limit)
        if current and studies and current not in {s.study_uid for s in studies}:
            raise InputError("--current is not among the studies found for this patient")
        roles = study_roles_for(client, studies, current) if args.patient_id else {}
    audit_find(_audit(settings), None, accession=args.accession, patient_id=args.patient_id, date=args.date,
               modality=args.modality, results=len(studies))
    if args.json:
        print_json([{**s.to_dict(), **({"role": roles[s.study_uid].role, "days_before": roles[s.study_uid].days_before,
                                        "body_parts": list(roles[s.study_uid].body_parts)} if roles else {})}
                    for s in studies])
        return 0
    if not studies:
        print("no study matches the search")
        return 0
    for n, s in enumerate(studies, start=1):
        counts = f"{s.series_count if s.series_count is not None else '?'} series, " \
                 f"{s.instance_count if s.instance_count is not None else '?'} instances"
        role = roles[s.study_uid].describe() if roles else ""
        print(f"{n:>2}. {_date(s.study_date)}  {'/'.join(s.modalities) or '-':<6} acc {s.accession_number or '-'}  "
              f"{s.description or '(no description)'}  [{counts}]" + (f"  <- {role}" if role else ""))
        print(f"    patient {s.patient_name or '-'}  ID {s.patient_id or '-'}  born {_date(s.patient_birth_date)}  "
              f"sex {s.patient_sex or '-'}")
        print(f"    study {s.study_uid}")
    if len(studies) >= args.limit:
        print(f"(the first {args.limit} studies: narrow the search to see others)")
    return 0


def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else (value or "-")


# --- series ---------------------------------------------------------------------------------------------
def cmd_series(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json

    with _client(settings) as client:
        series = client.series(args.study)
    if args.json:
        print_json([s.to_dict() for s in series])
    else:
        _print_series(series)
    return 0


def _print_series(series: list[SeriesSummary]) -> None:
    for s in series:
        kind = "" if s.likely_images else "  (no images)"
        n = s.instance_count if s.instance_count is not None else "?"
        print(f"  #{s.number if s.number is not None else '-':<4} {s.modality or '-':<4} {n:>5} instance(s)  "
              f"{s.description or '(no description)'}{kind}\n        series {s.series_uid}")


# --- get ------------------------------------------------------------------------------------------------
def cmd_get(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json
    from agent.pacs import audit_open, get_series

    out = Path(args.out).expanduser()
    with _client(settings) as client:
        series = client.series(args.study)
        images = [s for s in series if s.likely_images]
        if args.series and args.series != "all":
            chosen = [args.series.strip()]
        elif args.series == "all":
            chosen = [s.series_uid for s in images]
        elif len(images) == 1:
            chosen = [images[0].series_uid]
        elif not images:
            raise InputError("the study holds no image series (only reports or other objects): nothing to get")
        else:
            if not args.json:
                _print_series(series)
            raise InputError(f"the study has {len(images)} image series: choose one with --series UID "
                             "(or --series all)")
        if not chosen:
            raise InputError("the study holds no image series (only reports or other objects): nothing to get")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"{out} exists and is not an empty folder: choose a new output folder")
        if not out.resolve().parent.is_dir():
            raise InputError(f"the output folder's parent {out.resolve().parent} does not exist")
        results = []
        audit = _audit(settings)
        # several series: each into a private folder beside OUT, renamed to OUT only when all have arrived
        staging = out if len(chosen) == 1 else Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial",
                                                                   dir=out.resolve().parent))
        try:
            for n, series_uid in enumerate(chosen, start=1):
                dest = staging if len(chosen) == 1 else staging / f"series{n:02d}"
                got, study = get_series(settings, client, args.study, series_uid, dest)
                results.append((got, study))
            if staging != out:
                if out.exists():
                    out.rmdir()
                os.replace(staging, out)
                results = [(dataclasses.replace(got, path=out / got.path.name), study) for got, study in results]
        except BaseException:
            if staging != out:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        for got, study in results:
            audit_open(audit, None, study, images=got.count, skipped=got.skipped, files_written=True)
    if args.json:
        print_json([{**got.to_dict(), "summary": study.summary()} for got, study in results])
        return 0
    for got, study in results:
        shape = " x ".join(map(str, study.shape))
        print(f"wrote {got.count} de-identified image(s) ({got.bytes / 2**20:.1f} MiB, {got.seconds:.2f} s) to "
              f"{got.path}: {study.metadata.modality or '?'} {shape}, study key {study.study_key or '-'}")
        for note in got.notes:
            print(f"  note: {note}")
        for warning in study.warnings:
            print(f"  warning: {warning}")
    print("The originals are recorded in the re-identification map, used only to send a signed report back.")
    return 0


# --- send -----------------------------------------------------------------------------------------------
def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json
    from agent.pacs import SentLog, audit_send, check_signed, load_report, send_report
    from agent.signoff import ReportStore
    from agent.wiring import reid_map
    from tools.errors import RadconsultError

    store = ReportStore.from_settings(settings)
    rv = load_report(store, args.report)
    audit = _audit(settings)
    try:
        check_signed(store, rv)
        with _client(settings) as client:
            result = send_report(rv, reid_map(settings), client, SentLog.for_settings(settings))
    except RadconsultError as exc:
        audit_send(audit, None, rv, result=None, error=exc)
        raise
    audit_send(audit, None, rv, result=result)
    if args.json:
        print_json(result.to_dict())
    elif result.already_sent:
        print(f"{result.case_id}/v{result.version} was already sent to the PACS at {result.sent_at}: nothing "
              "was sent again")
    else:
        print(f"sent {result.case_id}/v{result.version} (signed by {rv.signed_by}) to the PACS as a DICOM SR "
              f"filed under the original study ({result.seconds:.2f} s)")
    return 0


# --- forget ---------------------------------------------------------------------------------------------
def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    from agent.wiring import reid_map
    from tools.pacs import check_uid

    removed = reid_map(settings).forget_study(check_uid(args.study, "the study UID"))
    print(f"removed {removed} entr{'y' if removed == 1 else 'ies'} from the re-identification map"
          if removed else "the re-identification map holds no such study")
    return 0
