"""`radconsult ask`: one consultation turn, optional summary.

The agent evaluation that was `radconsult eval agent` is a benchmark now: ``python bench/agent_eval.py``.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tools.disclaimer import DISCLAIMER
from tools.errors import RadconsultError

if TYPE_CHECKING:
    from agent.results import TurnResult
    from agent.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ask", help="ask the consultation agent a question (optionally about images)")
    p.add_argument("question", help="the clinical question")
    p.add_argument("--image", action="append", default=[], metavar="PATH",
                   help="attach a study (DICOM, PNG, JPEG, NIfTI); repeatable")
    p.add_argument("--patient", metavar="KEY", help="pseudonymous patient key whose prior reports may be searched")
    p.add_argument("--case", metavar="ID", default=None,
                   help="case id: questions with the same id share memory (default: a new case)")
    p.add_argument("--measure", action="append", default=[], metavar="SPEC",
                   help='a length marked on an --image, "[study=N] slice=42 x1,y1 x2,y2 [type=solid] [axis=short] '
                        '[label=RUL-1]" (pixels; study=N: the N-th --image, default 1; type solid | part-solid | '
                        "ground-glass; label= names the lesion, the same on each study, or an axis as before: "
                        'long axis | short axis | solid component); "study=2 absent label=RUL-1": the lesion is not '
                        "seen on that study. The first --image is the current study, later ones its priors. "
                        "Repeatable")
    p.add_argument("--summary", action="store_true",
                   help="also draft the cited diagnostic summary (saved as a draft version CASE/vN to sign)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_ask)
    # the evaluation moved out of the package: the old command says where, rather than "invalid choice"
    ev = sub.add_parser("eval", help="moved: python bench/agent_eval.py --set FILE (from a source checkout)")
    ev.add_argument("rest", nargs=argparse.REMAINDER)
    ev.set_defaults(func=cmd_eval_moved)


def cmd_eval_moved(args: argparse.Namespace, settings: Settings) -> int:
    from tools.errors import InputError

    raise InputError("`radconsult eval agent` moved to the benchmarks: run `python bench/agent_eval.py --set "
                     "bench/data/agent_eval.jsonl` from a source checkout")


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    import uuid

    from agent.cli import print_json
    from agent.consultation import Consultation

    case_id = args.case or f"cli-{uuid.uuid4().hex[:10]}"
    studies, measurements = _studies_and_measurements(args, settings)
    consult = Consultation(settings)
    streamed: list[str] = []

    def on_token(piece: str) -> None:
        streamed.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()

    draft = None
    try:
        result = consult.ask(case_id, args.question, images=studies, patient=args.patient,
                             on_token=None if args.json else on_token, summary=args.summary,
                             measurements=measurements)
        if result.summary is not None:
            draft = _save_draft(settings, consult, result, studies, measurements)
    finally:
        consult.close()
    _audit(settings, result)
    if args.json:
        print_json({**result.to_dict(), "report": draft})
    elif not result.error:
        _print_result(result, "".join(streamed))
        if draft:
            print(f"\nDraft summary saved as {draft}: a clinician signs it in the UI; a signed version of a study "
                  f"opened from the PACS is sent back with `radconsult pacs send {draft}`.")
    if result.error:  # the JSON above says what happened; the exit code and stderr's last line say it failed
        if streamed and not args.json:
            sys.stdout.write("\n")
        raise RadconsultError(f"the question was not answered (case {case_id}): {result.error}")
    return 0


def _studies_and_measurements(args: argparse.Namespace, settings: Settings) -> tuple[list[Any], list[Any]]:
    """Load every --image (de-identified in the loader) and measure each --measure on its study."""
    from pathlib import Path

    from agent.wiring import imaging_config
    from tools.errors import FileMissingError, InputError
    from tools.imaging import load
    from tools.measure import mark_absent, measure

    for path in args.image:
        if not Path(path).expanduser().exists():
            raise FileMissingError(f"image not found: {Path(path).name}")
    if args.measure and not args.image:
        raise InputError("--measure needs the study it was marked on: add --image PATH")
    if not (args.question or "").strip():
        return [], []  # the consultation reports the empty question before anything is loaded
    studies = [load(Path(p).expanduser(), imaging_config(settings)) for p in args.image]
    measurements = []
    for spec in args.measure:
        m = parse_measure(spec)
        if not 1 <= m.image <= len(studies):
            raise InputError(f"--measure {m.study_key}={m.image}: there are {len(studies)} --image studies")
        if m.absent:
            measurements.append(mark_absent(studies[m.image - 1], m.lesion or ""))
            continue
        measurements.append(measure(studies[m.image - 1], m.slice_index, m.p1, m.p2, label=m.label,
                                    nodule_type=m.nodule_type, lesion=m.lesion))
    if any(m.lesion for m in measurements):
        check_priors(studies)
    return studies, measurements


def check_priors(studies: list[Any]) -> None:
    """The first --image is the current study and later ones its priors: a prior of the same patient dated after
    it is refused (:class:`PriorNewerError`), so "current" and "prior" mean what the command line says."""
    from tools.comparison import check_order, parse_study_date

    current = studies[0]
    if not current.metadata.study_date:
        return  # the comparison itself says the date is missing, if a lesion is compared
    for n, prior in enumerate(studies[1:], start=2):
        if prior.metadata.study_date and prior.patient_key == current.patient_key:
            check_order(parse_study_date(prior.metadata.study_date), parse_study_date(current.metadata.study_date),
                        f"--image {n} (a prior)", "the current study, --image 1")


@dataclass(frozen=True)
class MeasureSpec:
    """One parsed --measure: pixel points (x, y) on ``slice_index`` of the ``image``-th --image (1-based), the
    axis ``label``, and the ``lesion`` it belongs to; ``absent``: the lesion is not seen on that study."""

    slice_index: int
    p1: tuple[float, float]
    p2: tuple[float, float]
    nodule_type: str | None = None
    label: str = "long axis"
    image: int = 1
    lesion: str | None = None
    absent: bool = False
    study_key: str = "study"       # how the command line named the study (study= or the older image=)


_TYPES = {"solid": "solid", "part-solid": "part_solid", "part_solid": "part_solid", "partsolid": "part_solid",
          "subsolid": "part_solid", "ground-glass": "ground_glass", "ground_glass": "ground_glass",
          "groundglass": "ground_glass", "ggn": "ground_glass", "ggo": "ground_glass"}
_MEASURE_HELP = ('write it as "study=1 slice=42 120,88 131,95 type=solid axis=long label=RUL-1" (x,y pixel '
                 'points; study= and label= are optional)')


_AXES = {"long": "long axis", "long axis": "long axis", "short": "short axis", "short axis": "short axis",
         "solid": "solid component", "solid component": "solid component"}
_AXIS_END = re.compile(r"\s*\b(long axis|short axis|solid component)$", re.I)
_AXIS_START = re.compile(r"(long|short)\s+axis\b|solid\s+component\b", re.I)


def _label_and_lesion(label: str) -> tuple[str | None, str | None]:
    """``label=`` as written: an axis ("short axis"), a lesion ("RUL-1"), or a lesion then its axis ("RUL-1 short
    axis"). Returns (axis or None, lesion or None)."""
    if label.lower() in _AXES:
        return _AXES[label.lower()], None
    if _AXIS_START.match(label):  # the older form: the whole label is the axis ("long axis (max)")
        return label, None
    m = _AXIS_END.search(label)
    if m and label[:m.start()].strip():
        return _AXES[m.group(1).lower()], label[:m.start()].strip()
    return None, label


def parse_measure(text: str) -> MeasureSpec:
    """``[study=N] slice=42 x1,y1 x2,y2 [type=solid] [axis=short] [label=RUL-1]``; ``label=`` takes the rest of
    the text: an axis (the older form, ``label=long axis``), the lesion's label, or both (``label=RUL-1 short
    axis``). ``image=N`` is the older name of ``study=N``. ``absent`` with a lesion label and no points: the
    lesion is not seen on that study. Without ``slice=`` the length is on slice 0 (a 2-D image)."""
    import math

    from tools.errors import InputError

    body, _, label = (text or "").partition("label=")
    label = " ".join(label.split())
    if len(label) > 60 or (label and not re.fullmatch(r"[A-Za-z0-9 ._()-]+", label)):
        raise InputError("--measure label must be up to 40 letters, digits, spaces or ._()-")
    axis, lesion = _label_and_lesion(label) if label else (None, None)
    if lesion is not None and len(lesion) > 40:
        raise InputError("--measure label must be up to 40 letters, digits, spaces or ._()-")
    values: dict[str, str] = {}
    points: list[tuple[float, float]] = []
    absent, study_key = False, "study"
    for token in body.split():
        key, eq, value = token.partition("=")
        if eq:
            if key in ("study", "image"):
                study_key = key
                key = "image"
            if key not in ("slice", "type", "image", "axis", "lesion") or key in values:
                raise InputError(f"--measure: unexpected '{token}': {_MEASURE_HELP}")
            values[key] = value
            continue
        if token.lower() in ("absent", "not-seen", "notseen"):
            absent = True
            continue
        xy = token.split(",")
        try:
            point = (float(xy[0]), float(xy[1])) if len(xy) == 2 else None
        except ValueError:
            point = None
        if point is None or not all(math.isfinite(v) for v in point):
            raise InputError(f"--measure: '{token}' is not an x,y point: {_MEASURE_HELP}")
        points.append(point)
    if "lesion" in values:
        if lesion is not None:
            raise InputError("--measure: name the lesion once, with lesion= or label=")
        lesion = values["lesion"]
    if "axis" in values:
        if axis is not None or values["axis"].lower() not in _AXES:
            raise InputError("--measure axis= is long, short or solid (and is not repeated in label=)")
        axis = _AXES[values["axis"].lower()]
    try:
        image = int(values.get("image", "1"))
        slice_index = int(values.get("slice", "0"))
    except ValueError:
        raise InputError(f"--measure slice= and study= take whole numbers: {_MEASURE_HELP}") from None
    if absent:
        if points or lesion is None:
            raise InputError('--measure absent takes a lesion label and no points: "study=2 absent label=RUL-1"')
        return MeasureSpec(slice_index, (0.0, 0.0), (0.0, 0.0), None, "not seen", image, lesion, True, study_key)
    if len(points) != 2:
        raise InputError(f"--measure needs exactly two points, got {len(points)}: {_MEASURE_HELP}")
    nodule_type = None
    if "type" in values:
        nodule_type = _TYPES.get(values["type"].lower())
        if nodule_type is None:
            raise InputError("--measure type must be solid, part-solid or ground-glass")
    return MeasureSpec(slice_index, points[0], points[1], nodule_type, axis or "long axis", image, lesion,
                       study_key=study_key)


def _save_draft(settings: Settings, consult: Any, result: TurnResult, studies: list[Any],
                measurements: list[Any]) -> str:
    """Store the turn's summary as the case's draft version (what a clinician signs); returns ``CASE/vN``."""
    from agent.comparison import current_study
    from agent.signoff import ReportStore
    from agent.summary import build_report

    measured = {m.series_uid for m in measurements}
    study = current_study([s for s in studies if s.series_uid in measured] or studies)
    patient_key = consult.state(result.case_id).get("patient_key")
    report = build_report(result.summary, result.case_id, patient_key, consult.evidence(result.case_id), study,
                          consult.model_cards())
    rv = ReportStore.from_settings(settings).save_draft(report)
    return f"{result.case_id}/v{rv.version}"


def _print_result(result: TurnResult, streamed: str) -> None:
    if streamed:
        sys.stdout.write("\n")
    # the stream may hold a draft that retrieval replaced, or lack the cited results added after it
    final_shown = streamed.strip().endswith(result.answer.strip())
    if not final_shown or result.unsupported_sentences:
        print(("\nAnswer:\n" if streamed else "") + result.marked_answer)
    if result.citations:
        print("\nReferences:")
        for e in result.citations:
            where = ", ".join(str(x) for x in (e.title, e.section, f"p. {e.page}" if e.page else None, e.date,
                                               e.url) if x)
            print(f"  [{e.id}] {e.source}" + (f": {where}" if where else ""))
    if result.tool_calls:
        print("\nTools: " + ", ".join(f"{t.name} ({t.ms:.0f} ms{'' if t.ok else ', failed'})"
                                      for t in result.tool_calls))
    print(f"\n{DISCLAIMER}  (case {result.case_id}, model {result.model}, {result.timings.total_ms / 1000:.1f} s)")
    if result.summary is not None:
        print("\n" + result.summary.to_markdown())


def _audit(settings: Settings, result: TurnResult) -> None:
    """Audit records without PHI: hashes of the texts, evidence ids, model name."""
    from agent.audit import AuditLog, text_hash
    from agent.toolbox import TOOLS

    log = AuditLog.from_settings(settings)
    versions = {"llm": str(result.model)[:128]}
    for call in result.tool_calls:
        if call.name in TOOLS:
            log.append(TOOLS.get(call.name).audit_action, user=None, case_id=result.case_id,
                       model_versions=versions, evidence_ids=call.evidence_ids,
                       details={"tool": call.name, "ok": call.ok, "auto": call.auto})
    log.append("answer", user=None, case_id=result.case_id, model_versions=versions, evidence_ids=result.cited_ids,
               details={"question_sha256": text_hash(result.question), "answer_sha256": text_hash(result.answer),
                        "tools": len(result.tool_calls), "unsupported": len(result.unsupported_sentences),
                        "contradicted": len(result.contradicted_sentences), "error": bool(result.error)})
    if result.summary is not None:
        log.append("summary", user=None, case_id=result.case_id, model_versions=versions,
                   evidence_ids=[r["id"] for r in result.summary.references],
                   details={"impression_source": result.summary.impression_source})
