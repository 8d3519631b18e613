"""Pure rendering for the page: the viewer image and the HTML of evidence cards, the trace, metadata and
status lines. No Gradio, no agent: unit-tested without a browser."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tools.errors import InputError

if TYPE_CHECKING:
    from agent.results import ToolCallRecord
    from agent.signoff import EvidenceRef, ReportVersion
    from tools.imaging import ImageStudy
    from tools.measure import Measurement
    from tools.pacs import SeriesSummary, StudySummary

WINDOW_PRESETS: dict[str, tuple[float, float] | None] = {
    # name: (window width, window level) in HU; None = the study's own display (VOI LUT)
    "Default": None,
    "Lung": (1500.0, -600.0),
    "Mediastinum": (350.0, 50.0),
    "Bone": (1800.0, 400.0),
}
MAX_VIEW_SIDE = 768
VIEW_MIN_SIDE = 512   # the viewer enlarges smaller images to this (a 128-pixel CT is too small to mark)
CITE_RE = re.compile(r"\[(E\d+)\]")


def _as_2d(arr: np.ndarray, slice_index: int) -> np.ndarray:
    if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[-1] != 3):
        return arr[int(np.clip(slice_index, 0, arr.shape[0] - 1))]
    return arr


def _heat(s: np.ndarray) -> np.ndarray:
    """[0,1] -> RGB float heat map (black-red-yellow-white ramp)."""
    r = np.clip(s * 3.0, 0, 1)
    g = np.clip(s * 3.0 - 1.0, 0, 1)
    b = np.clip(s * 3.0 - 2.0, 0, 1)
    return np.stack([r, g, b], axis=-1)


def _blend_saliency(out: np.ndarray, saliency: np.ndarray, slice_index: int, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    sal = np.asarray(saliency, dtype=np.float32)
    sal = sal[int(np.clip(slice_index, 0, sal.shape[0] - 1))] if sal.ndim == 3 else sal
    if sal.ndim != 2 or not sal.size:
        return out
    sal = np.nan_to_num(sal)
    lo, hi = float(sal.min()), float(sal.max())
    sal = (sal - lo) / (hi - lo) if hi > lo else np.zeros_like(sal)
    sal_img = np.asarray(Image.fromarray((sal * 255).astype(np.uint8)).resize(size, Image.BILINEAR))
    s = sal_img.astype(np.float32)[..., None] / 255.0
    s = np.clip((s - 0.5) / 0.5, 0, 1)  # the lower half stays clear, so the image stays readable
    alpha = np.where(s > 0, 0.1 + 0.35 * s, 0.0)
    return out * (1 - alpha) + _heat(0.34 + 0.33 * s[..., 0]) * alpha  # red (low) to yellow (high)


def image_size(study: ImageStudy) -> tuple[int, int]:
    """(height, width) of one slice of ``study``, in its own pixels."""
    height, width = study.shape[-3:-1] if study.is_rgb else study.shape[-2:]
    return int(height), int(width)


def view_size(height: int, width: int, max_side: int = MAX_VIEW_SIDE, min_side: int = 0) -> tuple[int, int]:
    """(width, height) of the shown image: at most ``max_side`` per side, enlarged to ``min_side`` when smaller."""
    side = max(height, width, 1)
    scale = min(1.0, max_side / side)
    if min_side and side * scale < min_side:
        scale = min_side / side
    return max(1, round(width * scale)), max(1, round(height * scale))


def render_view(study: ImageStudy, preset: str = "Default", slice_index: int = 0,
                saliency: np.ndarray | None = None, max_side: int = MAX_VIEW_SIDE, min_side: int = 0) -> np.ndarray:
    """The viewer image: uint8 RGB, at most ``max_side`` pixels per side (and at least ``min_side``, enlarged).

    ``preset`` windows CT pixels in HU (Lung, Mediastinum, Bone); other modalities use ``display``.
    ``saliency`` (values in [0, 1], any size, 2-D or per slice) is blended as a heat map.
    """
    from PIL import Image

    if min_side > max_side:
        raise InputError("min_side must not exceed max_side")
    window = WINDOW_PRESETS.get(preset)
    if window is not None and (study.metadata.modality or "").upper() == "CT" and not study.is_rgb:
        width, level = window
        img = np.clip((_as_2d(study.pixels, slice_index) - (level - width / 2)) / width, 0, 1)
    else:
        img = _as_2d(study.display, slice_index)
    img = np.nan_to_num(np.asarray(img, dtype=np.float32))
    rgb = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=-1)
    h, w = rgb.shape[:2]
    size = view_size(h, w, max_side, min_side)
    pil = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    out = np.asarray(pil).astype(np.float32) / 255.0
    if saliency is not None:
        out = _blend_saliency(out, saliency, slice_index, size)
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def link_citations(text: str, known: set[str] | None = None) -> str:
    """Markdown with each [E3] marker turned into a link to the evidence card ``#ev-E3``."""
    def sub(m: re.Match) -> str:
        eid = m.group(1)
        if known is not None and eid not in known:
            return f"[{eid}?]"
        return f"[\\[{eid}\\]](#ev-{eid})"

    return CITE_RE.sub(sub, text or "")


def _card_body(e: EvidenceRef) -> list[str]:
    esc = {k: html.escape(str(v)) if v is not None else "" for k, v in vars(e).items()}
    body = []
    if e.kind == "classifier" or e.model:
        model = " ".join(x for x in (esc["model"], esc["model_version"]) if x)
        prob = ""
        if e.probability is not None:
            prob = (f'<span class="rc-prob">P({esc["probability_of"]}) = {e.probability:.2f}</span>'
                    if e.probability_of else f'<span class="rc-prob">p = {e.probability:.2f}</span>')
        body.append(f'<div class="rc-src">{model} {prob}</div>')
        if e.label:
            body.append(f'<div>{esc["label"]}</div>')
        if e.caution:
            body.append(f'<div class="rc-caution">Caution: {esc["caution"]}</div>')
        if e.intended_use:
            body.append(f'<div class="rc-iu">Intended use: {esc["intended_use"]}</div>')
    else:
        where = ", ".join(x for x in (esc["source"], esc["section"]) if x)
        body.append(f'<div class="rc-src">{where}</div>')
    if e.quote:
        body.append(f'<blockquote>{esc["quote"]}</blockquote>')
    return body


def evidence_html(items: dict[str, EvidenceRef], cited: set[str] | None = None) -> str:
    """The evidence panel: one card per item, numbered as in the answer; cited ones highlighted."""
    if not items:
        return ('<div class="rc-empty">Evidence appears here: every cited passage and model result, '
                'numbered as in the answer.</div>')
    cards = []
    for eid, e in items.items():
        cls = "rc-ev" + (" rc-cited" if cited and eid in cited else "")
        eid_h, kind, title = html.escape(e.id), html.escape(e.kind), html.escape(e.title)
        cards.append(f'<div class="{cls}" id="ev-{eid_h}" data-eid="{eid_h}">'
                     f'<div class="rc-ev-head"><span class="rc-badge">{eid_h}</span>'
                     f'<span class="rc-kind">{kind}</span> {title}</div>{"".join(_card_body(e))}</div>')
    return '<div class="rc-evlist">' + "".join(cards) + "</div>"


def trace_html(calls: Sequence[ToolCallRecord]) -> str:
    """The tool trace: each call with its arguments, time, status and the evidence ids it added."""
    if not calls:
        return '<div class="rc-empty">No tool calls yet.</div>'
    rows = []
    for c in calls:
        if c.name == "read_case":  # how the question was read: every field, and what was assumed or corrected
            args = html.escape("; ".join(f"{k.replace('_', ' ')}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                                         for k, v in c.arguments.items()))
        else:
            args = html.escape(str(c.arguments))[:300]
        status = "ok" if c.ok else html.escape(c.error or "failed")
        how = (' <span class="rc-auto" title="run by the assistant itself, not chosen by the model">auto</span>'
               if c.auto else "")
        if c.aligned:
            args += ('<br><span class="rc-auto">aligned with the question: ' + html.escape("; ".join(c.aligned))
                     + "</span>")
        rows.append(f'<tr><td><code>{html.escape(c.name)}</code>{how}</td><td class="rc-args">{args}</td>'
                    f'<td>{c.ms / 1000:.2f} s</td><td>{status}</td>'
                    f'<td>{html.escape(", ".join(c.evidence_ids))}</td></tr>')
    return ('<table class="rc-trace"><thead><tr><th>tool</th><th>arguments</th><th>time</th><th>status</th>'
            '<th>evidence</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


_META_LABELS = {"modality": "Modality", "body_part": "Body part", "view_position": "View",
                "laterality": "Laterality", "patient_age_years": "Age (y)", "patient_sex": "Sex",
                "study_description": "Study", "series_description": "Series", "manufacturer": "Manufacturer",
                "transfer_syntax": "Transfer syntax", "study_date": "Study date", "frames": "Frames"}


def metadata_html(study: ImageStudy | None) -> str:
    """The de-identified metadata table, with a warning for burned-in annotation."""
    if study is None:
        return '<div class="rc-empty">No study loaded. Upload DICOM (files or a zip), PNG/JPEG or NIfTI.</div>'
    meta = study.metadata.to_dict()
    rows = [("Format", study.source_format), ("Shape", " x ".join(str(s) for s in study.shape)),
            ("Spacing (mm)", ", ".join("?" if s is None else f"{s:.3g}" for s in study.spacing))]
    for key, label in _META_LABELS.items():
        v = meta.get(key)
        if v not in (None, ""):
            rows.append((label, f"{v:.0f}" if isinstance(v, float) else v))
    warn = []
    if meta.get("burned_in_annotation"):
        warn.append('<div class="rc-warn">⚠ Burned-in annotation: the pixels may show identifying text. '
                    'Do not share screenshots outside the care team.</div>')
    for w in study.warnings:
        if "burned" in str(w).lower() and warn:
            continue
        warn.append(f'<div class="rc-note">{html.escape(str(w))}</div>')
    table = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return "".join(warn) + f'<table class="rc-meta">{table}</table>'


def summary_status_html(rv: ReportVersion | None) -> str:
    if rv is None:
        return "No summary drafted yet."
    if rv.is_signed:
        return (f'<span class="rc-status-signed">SIGNED</span> v{rv.version} by {html.escape(str(rv.signed_by))}'
                f" at {rv.signed_at} · SHA-256 {(rv.content_hash or '')[:16]}…")
    return f'<span class="rc-status-draft">DRAFT</span> v{rv.version} · not signed · exports are marked DRAFT'


def turn_done_html(seconds: float, failed: bool, cited: list[str]) -> str:
    """The status line under the chat when a turn ends (the browser tests wait for ``.rc-turn-done``)."""
    note = (f" · cites {', '.join(cited)}" if cited else "" if failed else " · ⚠ no evidence cited")
    return (f'<span class="rc-turn-done" data-state="{"error" if failed else "done"}">'
            f'{"Failed" if failed else "Answered"} in {seconds:.0f} s{note}</span>')


def sections_to_text(sections: tuple[tuple[str, str], ...]) -> str:
    """Editable form of a summary: ``## Heading`` then the section's Markdown, per section."""
    return "\n\n".join(f"## {h}\n{t.strip()}" for h, t in sections)


def text_to_sections(text: str) -> tuple[tuple[str, str], ...]:
    """Inverse of :func:`sections_to_text`; text before the first heading becomes a "Summary" section."""
    sections: list[tuple[str, list[str]]] = []
    for line in (text or "").splitlines():
        m = re.match(r"^##\s+(.+?)\s*$", line)
        if m:
            sections.append((m.group(1), []))
        else:
            if not sections:
                sections.append(("Summary", []))
            sections[-1][1].append(line)
    out = tuple((h, "\n".join(body).strip()) for h, body in sections)
    out = tuple((h, t) for h, t in out if t or h != "Summary")
    if not out:
        raise InputError("the edited summary is empty")
    return out


# --- measurements in the viewer ----------------------------------------------------------------------
def to_pixel(study: ImageStudy, shown: tuple[float, float], max_side: int = MAX_VIEW_SIDE,
             min_side: int = 0) -> tuple[float, float]:
    """A point (x, y) clicked on the shown image (as :func:`render_view` drew it) on the slice's own pixel grid."""
    height, width = image_size(study)
    shown_w, shown_h = view_size(height, width, max_side, min_side)
    x = (float(shown[0]) + 0.5) * width / shown_w - 0.5
    y = (float(shown[1]) + 0.5) * height / shown_h - 0.5
    return round(float(np.clip(x, 0, width - 1)), 2), round(float(np.clip(y, 0, height - 1)), 2)


def _to_shown(study: ImageStudy, p: tuple[float, float], size: tuple[int, int]) -> tuple[float, float]:
    height, width = image_size(study)
    return (p[0] + 0.5) * size[0] / width - 0.5, (p[1] + 0.5) * size[1] / height - 0.5


def draw_measurements(image: np.ndarray, study: ImageStudy, measurements: Sequence[Measurement], slice_index: int,
                      pending: tuple[float, float] | None = None) -> np.ndarray:
    """``image`` (the shown slice) with each measurement on this slice of this series drawn as a numbered line,
    and the first point of a length being marked as a cross. Numbers follow the order in ``measurements``."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    size = pil.size
    for n, m in enumerate(measurements, start=1):
        if not m.present or m.slice_index != slice_index or (m.series_uid and m.series_uid != study.series_uid):
            continue
        a, b = _to_shown(study, m.p1, size), _to_shown(study, m.p2, size)
        draw.line([a, b], fill=(255, 210, 0), width=2)
        for x, y in (a, b):
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], outline=(255, 210, 0))
        name = f"M{n} {m.lesion} " if m.lesion else f"M{n} "
        draw.text((max(a[0], b[0]) + 6, min(a[1], b[1])), f"{name}{m.length_mm:.1f} mm", fill=(255, 210, 0))
    if pending is not None:
        x, y = _to_shown(study, pending, size)
        draw.line([(x - 6, y), (x + 6, y)], fill=(0, 220, 255), width=2)
        draw.line([(x, y - 6), (x, y + 6)], fill=(0, 220, 255), width=2)
    return np.asarray(pil)


def measurement_label(n: int, m: Measurement, study: str | None = None) -> str:
    """"M1: long axis 8.0 mm, solid (slice 2)"; with a lesion and its study in a case of several studies:
    "M3: RUL-1 short axis 5.0 mm (S2, slice 3)", or "M4: RUL-1 not seen (S1)"."""
    lesion = f"{m.lesion} " if m.lesion else ""
    if not m.present:
        return f"M{n}: {lesion}not seen" + (f" ({study})" if study else "")
    kind = f", {m.nodule_type.replace('_', '-')}" if m.nodule_type else ""
    where = f"slice {m.slice_index}" if m.slice_index else "the image"
    return f"M{n}: {lesion}{m.label} {m.length_mm:.1f} mm{kind} ({study + ', ' if study else ''}{where})"


def measurements_html(measurements: Sequence[Measurement], sent: Sequence[Measurement] = (),
                      studies: Sequence[str | None] = ()) -> str:
    """The list beside the viewer: each length, its warnings, and whether the assistant has it yet."""
    if not measurements:
        return ('<div class="rc-empty">No measurement. Click both ends of a length on the image (type and label '
                'above); the next question takes them along.</div>')
    rows = []
    for n, m in enumerate(measurements, start=1):
        state = "with the assistant" if m in sent else "goes with the next question"
        warn = "".join(f'<div class="rc-warn">⚠ {html.escape(w)}</div>' for w in m.warnings)
        ref = studies[n - 1] if len(studies) >= n else None
        rows.append(f'<li class="rc-measure" data-n="{n}">{html.escape(measurement_label(n, m, ref))} '
                    f'<span class="rc-auto">{state}</span>{warn}</li>')
    return '<ol class="rc-measures">' + "".join(rows) + "</ol>"


# --- the PACS panel -----------------------------------------------------------------------------------
def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else (value or "-")


def study_label(s: StudySummary) -> str:
    """One found study as the clinician confirms it: date, modality, description, accession, size, and the
    patient's name, sex and year of birth (shown on the page only; never logged or kept in a case)."""
    counts = (f"{s.series_count if s.series_count is not None else '?'} series, "
              f"{s.instance_count if s.instance_count is not None else '?'} images")
    born = s.patient_birth_date[:4] if s.patient_birth_date else "?"
    family, _, given = s.patient_name.partition("^")
    name = ", ".join(x for x in (family, given.replace("^", " ").strip()) if x) or "-"
    return (f"{_date(s.study_date)} · {'/'.join(s.modalities) or '-'} · {s.description or '(no description)'} · "
            f"acc {s.accession_number or '-'} · {counts} · {name} ({s.patient_sex or '?'}, {born})")


def series_label(s: SeriesSummary) -> str:
    n = s.instance_count if s.instance_count is not None else "?"
    return (f"#{s.number if s.number is not None else '-'} {s.modality or '-'} · {s.description or '(no description)'}"
            f" · {n} image(s)")
