"""The Gradio consultation UI: chat with cited answers, evidence panel, viewer, cases, summary sign-off.

``build_ui(agent, settings)`` lays out the page around an agent that is passed in (never built
here); ``launch(demo, settings, host=..., port=..., auth=...)`` starts it with the limits from
settings (queue size, concurrency, upload size, allowed paths). ``bind_policy`` decides whether
authentication is needed: off only on loopback, and a public bind without users is refused.

Everything a browser session holds lives in a :class:`SessionState` inside ``gr.State``: cases,
loaded studies, chat, evidence, and a private temporary directory for uploads that is deleted when
the session ends. Two browsers never share a case.

The agent contract the UI relies on (:class:`ConsultationAgent`): ``ask(case_id, question, images=...,
patient=..., streaming=True)`` returns either a turn result (``answer``, ``citations``/``evidence``,
``tool_calls``, ``unsupported``) or an iterator of text pieces ending with one; ``summary(case_id)``
returns an object with Markdown/JSON renderings.
"""

from __future__ import annotations

import contextlib
import html
import inspect
import ipaddress
import logging
import re
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agent.audit import AuditLog, text_hash
from agent.settings import Settings
from agent.signoff import DEFAULT_INTENDED_USE, DISCLAIMER, EvidenceRef, Report, ReportStore, StudyRef
from tools.errors import FileTooLargeError, InputError, RadconsultError

log = logging.getLogger(__name__)

WINDOW_PRESETS: dict[str, tuple[float, float] | None] = {
    # name: (window width, window level) in HU; None = the study's own display (VOI LUT)
    "Default": None,
    "Lung": (1500.0, -600.0),
    "Mediastinum": (350.0, 50.0),
    "Bone": (1800.0, 400.0),
}
UPLOAD_TYPES = [".dcm", ".dicom", ".zip", ".png", ".jpg", ".jpeg", ".nii", ".gz", ".ima", ""]
MAX_VIEW_SIDE = 768
UNLOAD_GRACE_S = 300.0  # seconds after a browser disconnect before its uploads are deleted
_CITE_RE = re.compile(r"\[(E\d+)\]")
# shown until the first token: the tools and a CPU model can take a minute before anything streams
WORKING = "⏳ _Working: running the tools, then writing a cited answer (on a CPU this can take a minute)…_"
_CASE_PREFIX = "case-"


class ConsultationAgent(Protocol):
    """What the UI needs from the agent (agent/consultation.py implements it)."""

    def ask(self, case_id: str, question: str, **kwargs: Any) -> Any: ...

    def summary(self, case_id: str) -> Any: ...


# ------------------------------------------------------------------------------------------------
# session state
# ------------------------------------------------------------------------------------------------
@dataclass
class CaseState:
    """One case in one browser session. ``studies`` are loaded ImageStudy objects, newest last."""

    case_id: str
    created: float = field(default_factory=time.time)
    studies: list[Any] = field(default_factory=list)
    sent_studies: int = 0                       # how many studies the agent has already been given
    chat: list[dict[str, str]] = field(default_factory=list)
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)   # "E1" -> evidence view
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    saliency: Any = None                        # 2-D (or 3-D) array in [0, 1] for the current study
    saliency_label: str = ""
    report_version: int | None = None

    @property
    def patient_key(self) -> str | None:
        for s in reversed(self.studies):
            if getattr(s, "patient_key", None):
                return s.patient_key
        return None

    @property
    def study(self) -> Any:
        return self.studies[-1] if self.studies else None


class SessionState:
    """Everything one browser session holds; ``close()`` deletes its upload directory."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="session-", dir=root))
        self.cases: dict[str, CaseState] = {}
        self.current: str = self.new_case().case_id
        self.closed_at: float | None = None   # set when the browser disconnects; cleared on the next event

    def touch(self) -> None:
        """The browser is (back) in use: cancel a pending cleanup, recreate the directory if needed."""
        self.closed_at = None
        self.dir.mkdir(parents=True, exist_ok=True)

    def new_case(self) -> CaseState:
        case = CaseState(case_id=_CASE_PREFIX + uuid.uuid4().hex[:10])
        self.cases[case.case_id] = case
        self.current = case.case_id
        return case

    @property
    def case(self) -> CaseState:
        return self.cases[self.current]

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __deepcopy__(self, memo: dict) -> SessionState:  # gr.State deep-copies initial values only
        return self


def _cleanup_state(value: Any) -> None:
    if isinstance(value, SessionState):
        value.close()


# ------------------------------------------------------------------------------------------------
# pure rendering helpers (unit-tested without a browser)
# ------------------------------------------------------------------------------------------------
def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(obj, dict) and obj.get(name) is not None:
            return obj[name]
        if not isinstance(obj, dict) and getattr(obj, name, None) is not None:
            return getattr(obj, name)
    return default


def _as_2d(arr: np.ndarray, slice_index: int) -> np.ndarray:
    if arr.ndim >= 3 and arr.shape[-1] == 3 and arr.ndim == 4:
        return arr[int(np.clip(slice_index, 0, arr.shape[0] - 1))]
    if arr.ndim == 3 and arr.shape[-1] != 3:
        return arr[int(np.clip(slice_index, 0, arr.shape[0] - 1))]
    return arr


def _heat(s: np.ndarray) -> np.ndarray:
    """[0,1] -> RGB float heat map (black-red-yellow-white ramp)."""
    r = np.clip(s * 3.0, 0, 1)
    g = np.clip(s * 3.0 - 1.0, 0, 1)
    b = np.clip(s * 3.0 - 2.0, 0, 1)
    return np.stack([r, g, b], axis=-1)


def render_view(study: Any, preset: str = "Default", slice_index: int = 0, saliency: Any = None,
                max_side: int = MAX_VIEW_SIDE) -> np.ndarray:
    """The viewer image: uint8 RGB, at most ``max_side`` pixels per side.

    ``preset`` windows CT pixels in HU (Lung, Mediastinum, Bone); other modalities use ``display``.
    ``saliency`` (values in [0, 1], any size, 2-D or per slice) is blended as a heat map.
    """
    from PIL import Image

    window = WINDOW_PRESETS.get(preset)
    modality = (_get(getattr(study, "metadata", None), "modality") or "").upper()
    if window is not None and modality == "CT" and not study.is_rgb:
        width, level = window
        img = np.clip((_as_2d(study.pixels, slice_index) - (level - width / 2)) / width, 0, 1)
    else:
        img = _as_2d(study.display, slice_index)
    img = np.nan_to_num(np.asarray(img, dtype=np.float32))
    rgb = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=-1)
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    pil = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    out = np.asarray(pil).astype(np.float32) / 255.0
    if saliency is not None:
        sal = np.asarray(saliency, dtype=np.float32)
        sal = sal[int(np.clip(slice_index, 0, sal.shape[0] - 1))] if sal.ndim == 3 else sal
        if sal.ndim == 2 and sal.size:
            sal = np.nan_to_num(sal)
            lo, hi = float(sal.min()), float(sal.max())
            sal = (sal - lo) / (hi - lo) if hi > lo else np.zeros_like(sal)
            sal_img = np.asarray(Image.fromarray((sal * 255).astype(np.uint8)).resize(size, Image.BILINEAR))
            s = sal_img.astype(np.float32)[..., None] / 255.0
            s = np.clip((s - 0.5) / 0.5, 0, 1)  # the lower half stays clear, so the image stays readable
            alpha = 0.1 + 0.35 * s
            alpha = np.where(s > 0, alpha, 0.0)
            out = out * (1 - alpha) + _heat(0.34 + 0.33 * s[..., 0]) * alpha  # red (low) to yellow (high)
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def link_citations(text: str, known: set[str] | None = None) -> str:
    """Markdown with each [E3] marker turned into a link to the evidence card ``#ev-E3``."""
    def sub(m: re.Match) -> str:
        eid = m.group(1)
        if known is not None and eid not in known:
            return f"[{eid}?]"
        return f"[\\[{eid}\\]](#ev-{eid})"

    return _CITE_RE.sub(sub, text or "")


def evidence_view(item: Any) -> dict[str, Any]:
    """One ledger item (agent Evidence, citation dict or similar) as a flat dict for the panel/exports."""
    facts = _get(item, "facts", default={}) or {}
    card = _get(facts, "model_card", default={}) or {}
    label = _get(facts, "label", "finding", default=None)
    prob = _get(facts, "probability", "calibrated_probability", "p", default=None)
    probs = _get(facts, "probabilities", default=None)
    prob_of = _get(facts, "positive_label", default=None)
    if prob is not None and prob_of is None and isinstance(probs, dict):
        # a bare probability: name the label it belongs to when the probabilities say which
        prob_of = next((k for k, v in probs.items() if _close(v, prob)), None)
    elif prob is None and isinstance(probs, dict) and probs:
        prob_of = label if label in probs else max(probs, key=lambda k: float(probs[k]))
        prob = probs[prob_of]
    try:
        prob = float(prob) if prob is not None else None
    except (TypeError, ValueError):
        prob = None
    return {
        "id": str(_get(item, "id", default="E?")),
        "kind": str(_get(item, "kind", default="evidence")),
        "title": str(_get(item, "title", default="") or ""),
        "source": _get(item, "source"),
        "section": _get(item, "section"),
        "quote": _get(item, "quote"),
        "url": _get(item, "url"),
        "model": _get(facts, "model", "model_name", default=None) or _get(card, "name"),
        "model_version": _get(facts, "model_version", "version", default=None) or _get(card, "version"),
        "probability": prob,
        "probability_of": str(prob_of) if prob_of is not None else None,
        "label": str(label) if label is not None else None,
        "caution": _join(_get(facts, "caution", "abstain_reason", default=None) or _get(card, "caution")),
        "intended_use": _get(card, "intended_use", default=None) or _get(facts, "intended_use"),
    }


def _close(a: Any, b: Any) -> bool:
    try:
        return abs(float(a) - float(b)) < 1e-9
    except (TypeError, ValueError):
        return False


def _join(value: Any) -> str | None:
    if value in (None, "", [], ()):
        return None
    return value if isinstance(value, str) else "; ".join(str(v) for v in value)


def evidence_html(items: dict[str, dict[str, Any]], cited: set[str] | None = None) -> str:
    if not items:
        return ('<div class="rc-empty">Evidence appears here: every cited passage and model result, '
                'numbered as in the answer.</div>')
    cards = []
    for eid, e in items.items():
        esc = {k: html.escape(str(v)) if v is not None else "" for k, v in e.items()}
        cls = "rc-ev" + (" rc-cited" if cited and eid in cited else "")
        body = []
        if e["kind"] == "classifier" or e.get("model"):
            model = " ".join(x for x in (esc["model"], esc["model_version"]) if x)
            of = html.escape(str(e.get("probability_of") or ""))
            prob = (f'<span class="rc-prob">P({of}) = {e["probability"]:.2f}</span>' if of else
                    f'<span class="rc-prob">p = {e["probability"]:.2f}</span>') if e["probability"] is not None else ""
            body.append(f'<div class="rc-src">{model} {prob}</div>')
            if e.get("label"):
                body.append(f'<div>{esc["label"]}</div>')
            if e.get("caution"):
                body.append(f'<div class="rc-caution">Caution: {esc["caution"]}</div>')
            if e.get("intended_use"):
                body.append(f'<div class="rc-iu">Intended use: {esc["intended_use"]}</div>')
            if e.get("quote"):
                body.append(f'<blockquote>{esc["quote"]}</blockquote>')
        else:
            where = ", ".join(x for x in (esc["source"], esc["section"]) if x)
            body.append(f'<div class="rc-src">{where}</div>')
            if e.get("quote"):
                body.append(f'<blockquote>{esc["quote"]}</blockquote>')
        cards.append(f'<div class="{cls}" id="ev-{esc["id"]}" data-eid="{esc["id"]}">'
                     f'<div class="rc-ev-head"><span class="rc-badge">{esc["id"]}</span>'
                     f'<span class="rc-kind">{esc["kind"]}</span> {esc["title"]}</div>{"".join(body)}</div>')
    return '<div class="rc-evlist">' + "".join(cards) + "</div>"


def tool_call_view(call: Any) -> dict[str, Any]:
    seconds = _get(call, "seconds", "elapsed_s", "duration_s", "time_s", default=None)
    if seconds is None:
        ms = _get(call, "ms", "duration_ms", "elapsed_ms", default=None)
        seconds = float(ms) / 1000.0 if ms is not None else None
    error = _get(call, "error", default=None)
    return {"name": str(_get(call, "name", "tool", default="tool")),
            "args": _get(call, "args", "arguments", default={}),
            "seconds": float(seconds) if seconds is not None else None,
            "ok": error is None and _get(call, "ok", default=True) is not False,
            "error": str(error) if error else None,
            "evidence_ids": list(_get(call, "evidence_ids", default=[]) or []),
            # how the call came about: the graph's own retrieval, or arguments aligned with the question
            "auto": bool(_get(call, "auto", default=False)),
            "aligned": [str(a) for a in (_get(call, "aligned", default=[]) or [])]}


def trace_html(calls: list[dict[str, Any]]) -> str:
    if not calls:
        return '<div class="rc-empty">No tool calls yet.</div>'
    rows = []
    for c in calls:
        args = html.escape(str(c["args"]))[:300]
        secs = f'{c["seconds"]:.2f} s' if c["seconds"] is not None else "–"
        status = "ok" if c["ok"] else html.escape(c["error"] or "failed")
        ev = ", ".join(c["evidence_ids"])
        how = (' <span class="rc-auto" title="run by the assistant itself: the model answered without a '
               'source">auto</span>' if c.get("auto") else "")
        if c.get("aligned"):
            args += '<br><span class="rc-auto">aligned with the question: ' + html.escape(
                "; ".join(c["aligned"])) + "</span>"
        rows.append(f'<tr><td><code>{html.escape(c["name"])}</code>{how}</td><td class="rc-args">{args}</td>'
                    f'<td>{secs}</td><td>{status}</td><td>{html.escape(ev)}</td></tr>')
    return ('<table class="rc-trace"><thead><tr><th>tool</th><th>arguments</th><th>time</th><th>status</th>'
            '<th>evidence</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def metadata_html(study: Any) -> str:
    if study is None:
        return '<div class="rc-empty">No study loaded. Upload DICOM (files or a zip), PNG/JPEG or NIfTI.</div>'
    meta = study.metadata.as_dict() if hasattr(study.metadata, "as_dict") else dict(study.metadata)
    rows = [("Format", study.source_format), ("Shape", " x ".join(str(s) for s in study.shape)),
            ("Spacing (mm)", ", ".join("?" if s is None else f"{s:.3g}" for s in study.spacing))]
    labels = {"modality": "Modality", "body_part": "Body part", "view_position": "View",
              "laterality": "Laterality", "patient_age_years": "Age (y)", "patient_sex": "Sex",
              "study_description": "Study", "series_description": "Series", "manufacturer": "Manufacturer",
              "transfer_syntax": "Transfer syntax", "study_date": "Study date", "frames": "Frames"}
    for key, label in labels.items():
        v = meta.get(key)
        if v not in (None, ""):
            rows.append((label, f"{v:.0f}" if isinstance(v, float) else v))
    warn = []
    if meta.get("burned_in_annotation"):
        warn.append('<div class="rc-warn">⚠ Burned-in annotation: the pixels may show identifying text. '
                    'Do not share screenshots outside the care team.</div>')
    for w in getattr(study, "warnings", ()) or ():
        if "burned" in str(w).lower() and warn:
            continue
        warn.append(f'<div class="rc-note">{html.escape(str(w))}</div>')
    table = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return "".join(warn) + f'<table class="rc-meta">{table}</table>'


# ------------------------------------------------------------------------------------------------
# uploads
# ------------------------------------------------------------------------------------------------
def _safe_extract(zip_path: Path, dest: Path, max_bytes: int, max_members: int = 5000) -> list[Path]:
    """Extract a zip without path traversal, links or a decompression bomb (total ``max_bytes``)."""
    out: list[Path] = []
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) > max_members:
                raise InputError(f"zip holds {len(members)} files (limit {max_members})")
            total = sum(m.file_size for m in members)
            if total > max_bytes:
                raise FileTooLargeError(f"zip expands to {total / 1e6:.0f} MB (limit {max_bytes / 1e6:.0f} MB)")
            for i, m in enumerate(members):
                name = Path(m.filename).name
                if not name or name.startswith(".") or "__MACOSX" in m.filename:
                    continue
                target = dest / f"{i:05d}_{re.sub(r'[^A-Za-z0-9._-]', '_', name)}"
                with zf.open(m) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                out.append(target)
    except zipfile.BadZipFile as exc:
        raise InputError(f"the zip file is corrupt: {exc}") from exc
    if not out:
        raise InputError("the zip file holds no files")
    return out


def stage_upload(paths: list[Path], session_dir: Path, max_bytes: int) -> Path:
    """Copy uploaded files into a fresh directory of the session (sizes checked first); return the
    one file to load, or the directory when the upload is a series (several files or a zip)."""
    if not paths:
        raise InputError("no file uploaded")
    total = 0
    for p in paths:
        if not p.is_file():
            raise InputError("an uploaded file is missing")
        total += p.stat().st_size
    if total > max_bytes:
        raise FileTooLargeError(f"upload is {total / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB "
                                "(settings.max_upload_bytes)")
    dest = Path(tempfile.mkdtemp(prefix="upload-", dir=session_dir))
    staged: list[Path] = []
    for i, p in enumerate(paths):
        if p.suffix.lower() == ".zip":
            staged += _safe_extract(p, dest, max_bytes)
        else:
            name = re.sub(r"[^A-Za-z0-9._-]", "_", p.name)[-80:] or "upload"
            target = dest / f"{i:05d}_{name}"
            shutil.copyfile(p, target)
            staged.append(target)
    return staged[0] if len(staged) == 1 else dest


# ------------------------------------------------------------------------------------------------
# the app
# ------------------------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_policy(host: str, settings: Settings) -> Callable[[str, str], bool] | None:
    """The auth function for ``launch`` (None: no login, loopback only). A non-loopback ``host``
    without users raises :class:`InputError` before anything else starts."""
    from agent.users import UserStore

    store = UserStore(settings.users_path)
    if not store.has_users():
        if is_loopback(host):
            return None
        raise InputError(f"refusing to bind {host} without users: anyone on the network could use it. "
                         "Add one with `radconsult users add NAME`, or bind 127.0.0.1.")
    audit = AuditLog.from_settings(settings)

    def auth(username: str, password: str) -> bool:
        ok = store.verify(username, password)
        if ok:
            audit.append("login", user=username)
        else:
            audit.append("login_failed", user=None, details={"name_sha256": text_hash(username or "")})
        return ok

    return auth


def _intended_use(agent: Any, settings: Settings) -> list[dict[str, str]]:
    """Model cards to state on the page and in exports: from the agent, else the classifier registry."""
    cards = getattr(agent, "model_cards", None)
    try:
        if callable(cards):
            cards = cards()
        if not cards:
            import importlib

            list_models = importlib.import_module("tools.classifiers.registry").list_models
            try:
                cards = list_models(settings)
            except TypeError:
                cards = list_models()
    except Exception as exc:  # noqa: BLE001 - a missing registry must not stop the page
        log.info("model cards unavailable: %s", exc)
        cards = []
    out = []
    for c in cards or []:
        card = _get(c, "model_card", "card", default=c)
        if callable(card):
            card = card()
        out.append({"name": str(_get(c, "name", default=_get(card, "name", default="model"))),
                    "version": str(_get(c, "version", default=_get(card, "version", default="")) or ""),
                    "intended_use": str(_get(card, "intended_use", default="") or DEFAULT_INTENDED_USE)})
    return out


def _model_versions(agent: Any, settings: Settings, evidence: list[dict[str, Any]]) -> dict[str, str]:
    versions = {"llm": str(getattr(agent, "model_name", None) or settings.llm)}
    for e in evidence:
        if e.get("model"):
            versions[str(e["model"])] = str(e.get("model_version") or "")
    return versions


def _call_ask(agent: Any, case_id: str, question: str, studies: list[Any], patient: str | None) -> Any:
    """Start a turn: ``agent.stream`` when the agent has it, else ``agent.ask`` with the keyword
    arguments it accepts (``streaming=True`` where supported)."""
    if callable(getattr(agent, "stream", None)):
        return agent.stream(case_id, question, images=studies, patient=patient)
    kwargs: dict[str, Any] = {"images": studies, "patient": patient, "streaming": True}
    try:
        params = inspect.signature(agent.ask).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            kwargs = {k: v for k, v in kwargs.items() if k in params}
    except (TypeError, ValueError):
        pass
    return agent.ask(case_id, question, **kwargs)


def _iter_turn(result: Any) -> Iterator[tuple[str | None, Any]]:
    """Normalise an ask() result to (text piece, None) ... then (None, final turn)."""
    if _get(result, "answer") is not None:
        yield None, result
        return
    final = None
    for piece in result:
        if isinstance(piece, str):
            yield piece, None
        elif isinstance(piece, dict) and not _get(piece, "answer") and _get(piece, "text", "delta", "token"):
            yield str(_get(piece, "text", "delta", "token")), None
        elif _get(piece, "answer") is not None:
            final = piece
    if final is None:
        raise RadconsultError("the agent finished without an answer")
    yield None, final


def _turn_saliency(turn: Any) -> tuple[Any, str]:
    for f in list(_get(turn, "findings", default=[]) or []):
        sal = _get(f, "saliency", default=None)
        sal = _get(sal, "map", "array", "heatmap", default=sal) if not isinstance(sal, np.ndarray) else sal
        if sal is not None:
            return np.asarray(sal, dtype=np.float32), str(_get(f, "label", "name", default="finding"))
    return None, ""


def _classifier_saliency(case: CaseState, settings: Settings) -> tuple[Any, str]:
    """Grad-CAM of the classifier the answer cited, on the case's current 2-D study (the agent's tool
    keeps no arrays). Returns (None, "") when there is none or it cannot be computed."""
    study = case.study
    models = [e for e in case.evidence.values() if e.get("kind") == "classifier" and e.get("model")]
    if study is None or not models or study.is_volume:
        return None, ""
    model = str(models[-1]["model"])
    try:
        import importlib

        classify = importlib.import_module("tools.classifiers.inference").classify
        finding = classify(study, model=model, settings=settings, saliency=True)
    except (RadconsultError, ImportError) as exc:
        log.info("no saliency for %s: %s", model, exc)
        return None, ""
    sal = getattr(finding, "saliency", None)
    if sal is None:
        return None, ""
    label = getattr(finding, "label", None) or models[-1].get("label") or "finding"
    return np.asarray(sal, dtype=np.float32), f"{label} ({model})"


CSS = """
.gradio-container {max-width: 1680px !important; margin: 0 auto;}
#rc-header {display:flex; align-items:center; gap:14px; padding:6px 4px 2px 4px;}
#rc-header .rc-title {font-size:1.15rem; font-weight:650; letter-spacing:0.2px;}
#rc-header .rc-sub {opacity:0.7; font-size:0.85rem;}
.rc-disclaimer {border-left:4px solid #d97706; background:rgba(217,119,6,0.10); padding:6px 10px;
  border-radius:4px; font-size:0.85rem;}
.rc-disclaimer b {color:#d97706;}
.rc-ev {border:1px solid var(--border-color-primary); border-radius:6px; padding:6px 8px; margin-bottom:6px;
  font-size:0.84rem;}
.rc-ev:target, .rc-cited {border-color:#0ea5e9; box-shadow:0 0 0 1px #0ea5e9 inset;}
.rc-ev-head {font-weight:600; margin-bottom:2px;}
.rc-badge {background:#0ea5e9; color:white; border-radius:4px; padding:0 6px; margin-right:6px; font-size:0.78rem;}
.rc-kind {text-transform:uppercase; font-size:0.7rem; opacity:0.7; margin-right:6px;}
.rc-src {opacity:0.85;}
.rc-prob {font-family:var(--font-mono); background:rgba(14,165,233,0.15); padding:0 4px; border-radius:3px;}
.rc-caution {color:#d97706;}
.rc-iu {opacity:0.7; font-size:0.78rem;}
.rc-ev blockquote {margin:4px 0 0 0; padding-left:8px; border-left:3px solid var(--border-color-primary);
  font-style:italic;}
.rc-warn {background:rgba(220,38,38,0.12); border-left:4px solid #dc2626; padding:5px 8px; border-radius:4px;
  margin-bottom:6px; font-size:0.84rem;}
.rc-note {opacity:0.75; font-size:0.8rem; margin-bottom:4px;}
.rc-meta, .rc-trace {width:100%; font-size:0.8rem; border-collapse:collapse;}
.rc-meta th {text-align:left; font-weight:500; opacity:0.7; padding:1px 8px 1px 0; width:38%;}
.rc-meta th, .rc-meta td, .rc-trace th, .rc-trace td {border:none !important;
  border-bottom:1px solid var(--border-color-primary) !important; background:transparent !important;}
.rc-meta, .rc-trace {border:none !important;}
#rc-meta table, #rc-meta tr {border:none !important;}
#rc-summary h1 {font-size:1.15rem; margin:4px 0;}
#rc-summary h2 {font-size:0.95rem; margin:8px 0 2px 0; text-transform:uppercase; letter-spacing:0.4px;
  opacity:0.85;}
#rc-summary p, #rc-summary li {font-size:0.86rem;}
#rc-evidence {max-height:calc(100vh - 160px); overflow-y:auto;}
#rc-chat a, #rc-summary a {color:#38bdf8; text-decoration:none; font-weight:600;}
.rc-meta td, .rc-trace td, .rc-trace th {padding:2px 6px 2px 0; vertical-align:top;}
.rc-auto {font-size:0.72rem; color:#b45309;}
.rc-args {font-family:var(--font-mono); font-size:0.74rem; opacity:0.85; word-break:break-all;}
.rc-empty {opacity:0.6; font-size:0.84rem; padding:6px 0;}
#rc-turn-status {font-size:0.8rem; opacity:0.8; min-height:1em;}
.rc-status-draft {color:#dc2626; font-weight:600;}
.rc-status-signed {color:#16a34a; font-weight:600;}
#rc-viewer img {background:#000;}
footer {display:none !important;}
"""


def _theme():
    import gradio as gr

    return gr.themes.Soft(primary_hue="sky", neutral_hue="slate", radius_size="sm", spacing_size="sm",
                          text_size="sm", font=["Inter", "system-ui", "sans-serif"])


# the box empties after each upload (the viewer shows the study): its label says it adds a study
UPLOAD_LABEL = "Add a study: DICOM, series .zip, PNG/JPEG, NIfTI"


def build_ui(agent: ConsultationAgent, settings: Settings):
    """The page, around ``agent``. Returns a ``gr.Blocks``; start it with :func:`launch`."""
    import gradio as gr

    audit = AuditLog.from_settings(settings)
    reports = ReportStore.from_settings(settings)
    exports_root = settings.cache_dir / "ui-sessions"
    cards = _intended_use(agent, settings)
    sessions: dict[str, SessionState] = {}
    sessions_lock = threading.Lock()

    def user_of(request: gr.Request | None) -> str | None:
        return getattr(request, "username", None) if request is not None else None

    def session(state: Any, request: gr.Request | None) -> SessionState:
        if isinstance(state, SessionState):
            state.touch()
            return state
        sess = SessionState(exports_root)
        key = getattr(request, "session_hash", None)
        if key:
            with sessions_lock:
                sessions[key] = sess
        return sess

    def case_choices(sess: SessionState) -> list[tuple[str, str]]:
        out = []
        for cid, c in sess.cases.items():
            label = cid + (f"  ·  {c.patient_key[:12]}" if c.patient_key else "") + (
                f"  ·  {len(c.studies)} study" if c.studies else "")
            out.append((label, cid))
        return out

    def view_outputs(case: CaseState, preset: str = "Default", slice_index: int = 0, overlay: bool = False):
        study = case.study
        if study is None:
            return (None, gr.update(visible=False, value="Default"), gr.update(visible=False, value=0),
                    gr.update(value=False, interactive=False), "", metadata_html(None))
        is_ct = (_get(study.metadata, "modality") or "").upper() == "CT"
        depth = int(study.shape[0]) if study.is_volume else 1
        slice_index = int(np.clip(slice_index if slice_index else depth // 2, 0, max(0, depth - 1)))
        sal = case.saliency if overlay else None
        img = render_view(study, preset if is_ct else "Default", slice_index, sal)
        caption = (f"Saliency overlay: **{case.saliency_label}** (where the model looked; not a segmentation)"
                   if sal is not None else "")
        return (img, gr.update(visible=is_ct, value=preset if is_ct else "Default"),
                gr.update(visible=depth > 1, maximum=max(1, depth - 1), value=slice_index),
                gr.update(value=bool(sal is not None), interactive=case.saliency is not None), caption,
                metadata_html(study))

    def summary_status(case: CaseState) -> str:
        if case.report_version is None:
            return "No summary drafted yet."
        try:
            rv = reports.load(case.case_id, case.report_version)
        except RadconsultError as exc:
            return f"⚠ {exc}"
        if rv.is_signed:
            return (f'<span class="rc-status-signed">SIGNED</span> v{rv.version} by {html.escape(str(rv.signed_by))}'
                    f" at {rv.signed_at} · SHA-256 {rv.content_hash[:16]}…")
        return f'<span class="rc-status-draft">DRAFT</span> v{rv.version} · not signed · exports are marked DRAFT'

    def case_outputs(sess: SessionState):
        case = sess.case
        pk = case.patient_key
        info = (f"**Case** `{case.case_id}` · **Patient key** `{pk}`" if pk else
                f"**Case** `{case.case_id}` · no patient key yet (upload a study)")
        return (gr.update(choices=case_choices(sess), value=case.case_id), info, *view_outputs(case),
                case.chat, evidence_html(case.evidence), trace_html(case.tool_calls),
                "", summary_status(case), "")

    # Gradio's own cache (uploads before staging, returned export copies): files older than an hour go.
    with gr.Blocks(title="radconsult · consultation", fill_width=True, delete_cache=(600, 3600)) as demo:
        state = gr.State(None, delete_callback=_cleanup_state)
        iu = "; ".join(f"{c['name']}: {c['intended_use']}" for c in cards) or DEFAULT_INTENDED_USE
        gr.HTML(f'<div id="rc-header"><span class="rc-title">radconsult</span>'
                f'<span class="rc-sub">imaging consultation · local, offline</span></div>'
                f'<div class="rc-disclaimer" id="rc-disclaimer"><b>{html.escape(DISCLAIMER)}</b> '
                f'<details style="display:inline"><summary style="display:inline;cursor:pointer">'
                f'Models\' intended use</summary>{html.escape(iu)}</details></div>')
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=320):
                with gr.Row():
                    case_dd = gr.Dropdown(label="Case", choices=[], scale=3, elem_id="rc-case")
                    new_btn = gr.Button("+ New case", scale=1, size="sm", elem_id="rc-new-case")
                case_info = gr.Markdown(elem_id="rc-case-info")
                upload = gr.File(label=UPLOAD_LABEL,
                                 file_count="multiple", file_types=UPLOAD_TYPES, height=150, elem_id="rc-upload")
                upload_msg = gr.Markdown(elem_id="rc-upload-msg")
                viewer = gr.Image(show_label=False, interactive=False, height=440, elem_id="rc-viewer",
                                  buttons=["fullscreen"], format="png")
                with gr.Row():
                    preset = gr.Radio(list(WINDOW_PRESETS), value="Default", label="CT window",
                                      visible=False, elem_id="rc-preset")
                    overlay = gr.Checkbox(label="Saliency overlay", value=False, interactive=False,
                                          elem_id="rc-overlay")
                slice_sl = gr.Slider(0, 1, value=0, step=1, label="Slice", visible=False, elem_id="rc-slice")
                overlay_caption = gr.Markdown(elem_id="rc-overlay-caption")
                with gr.Accordion("De-identified metadata", open=True):
                    meta = gr.HTML(elem_id="rc-meta")
            with gr.Column(scale=6, min_width=420):
                chatbot = gr.Chatbot(show_label=False, height=500, elem_id="rc-chat", layout="panel",
                                     buttons=["copy"], feedback_options=None,
                                     placeholder="Upload a study, then ask a question. Answers cite "
                                                 "evidence as [E1], [E2]… listed on the right.")
                with gr.Row():
                    question = gr.Textbox(show_label=False, placeholder="Ask about this case…", lines=2,
                                          max_lines=6, scale=6, elem_id="rc-question", max_length=4000)
                    send = gr.Button("Ask", variant="primary", scale=1, elem_id="rc-send")
                turn_status = gr.HTML(elem_id="rc-turn-status")
                with gr.Accordion("Tool calls (trace)", open=False, elem_id="rc-trace-acc"):
                    trace = gr.HTML(elem_id="rc-trace")
                with gr.Accordion("Summary & sign-off", open=True, elem_id="rc-summary-acc"):
                    with gr.Row():
                        draft_btn = gr.Button("Draft summary", size="sm", elem_id="rc-draft")
                        sign_btn = gr.Button("Sign", size="sm", variant="stop", elem_id="rc-sign")
                        md_btn = gr.Button("Export Markdown", size="sm", elem_id="rc-export-md")
                        pdf_btn = gr.Button("Export PDF", size="sm", elem_id="rc-export-pdf")
                        sr_btn = gr.Button("Export DICOM SR", size="sm", elem_id="rc-export-sr")
                    sum_status = gr.HTML(elem_id="rc-summary-status")
                    with gr.Accordion("Edit before signing", open=False, elem_id="rc-edit-acc"):
                        edit_box = gr.Textbox(show_label=False, lines=10, max_lines=30, elem_id="rc-edit",
                                              placeholder="Draft a summary first; edit its sections here. "
                                                          "Editing a signed summary makes a new version.")
                        save_btn = gr.Button("Save edit", size="sm", elem_id="rc-save-edit")
                    summary_md = gr.Markdown(elem_id="rc-summary")
                    export_file = gr.File(label="Export", interactive=False, elem_id="rc-export-file", visible=False)
            with gr.Column(scale=3, min_width=280):
                gr.Markdown("**Evidence**")
                evidence = gr.HTML(evidence_html({}), elem_id="rc-evidence")

        view_comps = [viewer, preset, slice_sl, overlay, overlay_caption, meta]
        case_comps = [case_dd, case_info, *view_comps, chatbot, evidence, trace, summary_md, sum_status, turn_status]

        def on_load(st, request: gr.Request):
            sess = session(st, request)
            return (sess, *case_outputs(sess))

        def on_new_case(st, request: gr.Request):
            sess = session(st, request)
            case = sess.new_case()
            audit.append("case_new", user=user_of(request), case_id=case.case_id)
            return (sess, *case_outputs(sess))

        def on_switch(case_id, st, request: gr.Request):
            sess = session(st, request)
            if case_id in sess.cases:
                sess.current = case_id
            return (sess, *case_outputs(sess))

        def on_upload(files, st, request: gr.Request):
            from tools.imaging import load

            sess = session(st, request)
            case = sess.case
            paths = [Path(f if isinstance(f, str) else getattr(f, "name", f)) for f in (files or [])]
            msg = ""
            try:
                source = stage_upload(paths, sess.dir, settings.max_upload_bytes)
                study = load(source, settings)
                case.studies.append(study)
                case.saliency, case.saliency_label = None, ""
                fmt = study.source_format
                msg = (f"✓ Loaded {fmt.upper()} {' x '.join(str(s) for s in study.shape)}"
                       + (f" · {len(study.warnings)} warning(s)" if study.warnings else ""))
                audit.append("upload", user=user_of(request), case_id=case.case_id,
                             details={"format": fmt, "files": len(paths), "ndim": len(study.shape),
                                      "study_key": study.study_key})
            except RadconsultError as exc:
                msg = f"⚠ Upload rejected: {exc}"
                audit.append("upload_rejected", user=user_of(request), case_id=case.case_id,
                             details={"error": type(exc).__name__, "files": len(paths)})
            finally:
                for p in paths:  # Gradio's own copy: the session directory holds the only one
                    with contextlib.suppress(OSError):
                        p.unlink(missing_ok=True)
            return (sess, msg, None, *case_outputs(sess))

        def on_view(preset_v, slice_v, overlay_v, st, request: gr.Request):
            sess = session(st, request)
            return view_outputs(sess.case, preset_v or "Default", int(slice_v or 0), bool(overlay_v))

        def on_ask(q, st, request: gr.Request):
            sess = session(st, request)
            case = sess.case
            q = (q or "").strip()
            if not q:
                yield (sess, case.chat, "", gr.update(), gr.update(), *view_outputs(case), gr.update())
                return
            user = user_of(request)
            case.chat = [*case.chat, {"role": "user", "content": q},
                         {"role": "assistant", "content": WORKING}]
            t_start = time.perf_counter()
            busy = "Answering…" if getattr(agent, "is_warm", True) else \
                "Answering… (first start: the knowledge base and the model are still being prepared, about a minute)"
            yield (sess, case.chat, "", gr.update(), gr.update(), *[gr.update()] * len(view_comps),
                   f'<span class="rc-turn-busy">{busy}</span>')
            new_studies = case.studies[case.sent_studies:]
            patient = case.patient_key
            text = ""
            cited: set[str] = set()  # from the answer itself (the chat holds it as Markdown links)
            try:
                turn: Any = None
                for piece, final in _iter_turn(_call_ask(agent, case.case_id, q, new_studies, patient)):
                    if piece is None:
                        turn = final
                        continue
                    text += piece
                    case.chat[-1] = {"role": "assistant", "content": link_citations(text)}
                    yield (sess, case.chat, "", gr.update(), gr.update(), *[gr.update()] * len(view_comps),
                           gr.update())
                case.sent_studies = len(case.studies)
                items = list(_get(turn, "evidence", "ledger", default=None) or _get(turn, "citations", default=[]))
                if callable(getattr(agent, "evidence", None)):  # the full ledger, with model facts
                    try:
                        items = list(agent.evidence(case.case_id)) or items
                    except RadconsultError as exc:
                        log.warning("evidence ledger unavailable: %s", exc)
                for item in items:
                    view = evidence_view(item)
                    case.evidence[view["id"]] = view
                calls = [tool_call_view(c) for c in _get(turn, "tool_calls", default=[]) or []]
                case.tool_calls += calls
                answer = str(_get(turn, "answer", default=text))
                if _get(turn, "error"):
                    log.warning("turn ended with an error: %s", _get(turn, "error"))
                cited = set(_CITE_RE.findall(answer))
                body = link_citations(answer, set(case.evidence))
                unsupported = list(_get(turn, "unsupported", "unsupported_sentences", default=[]) or [])
                if unsupported:
                    body += ("\n\n> ⚠ Without a citation (check before relying on it): "
                             + " · ".join(f"_{html.escape(str(s))}_" for s in unsupported[:5]))
                case.chat[-1] = {"role": "assistant", "content": body}
                sal, label = _turn_saliency(turn)
                if sal is None:
                    sal, label = _classifier_saliency(case, settings)
                if sal is not None:
                    case.saliency, case.saliency_label = sal, label
                versions = _model_versions(agent, settings, list(case.evidence.values()))
                for c in calls:
                    action = ("classify" if "classif" in c["name"] else
                              "search" if any(k in c["name"] for k in ("search", "retriev", "guideline", "kb"))
                              else None)
                    if action:
                        audit.append(action, user=user, case_id=case.case_id, model_versions=versions,
                                     evidence_ids=c["evidence_ids"], details={"tool": c["name"][:64],
                                                                              "ok": c["ok"]})
                audit.append("answer", user=user, case_id=case.case_id, model_versions=versions,
                             evidence_ids=sorted(cited),
                             details={"question_sha256": text_hash(q), "answer_sha256": text_hash(answer),
                                      "unsupported": len(unsupported)})
            except RadconsultError as exc:
                case.chat[-1] = {"role": "assistant", "content": f"⚠ {exc}"}
            except Exception as exc:  # noqa: BLE001 - the page must show a message, never hang
                log.exception("agent turn failed")
                case.chat[-1] = {"role": "assistant", "content": f"⚠ The assistant failed: {type(exc).__name__}. "
                                                                 "See the server log."}
            overlay_on = case.saliency is not None
            final_cited = sorted(cited & set(case.evidence), key=lambda e: int(e[1:]))
            failed = case.chat[-1]["content"].startswith("⚠")
            status = (f'<span class="rc-turn-done" data-state="{"error" if failed else "done"}">'
                      f'{"Failed" if failed else "Answered"} in {time.perf_counter() - t_start:.0f} s'
                      + (f" · cites {', '.join(final_cited)}" if final_cited else
                         "" if failed else " · ⚠ no evidence cited") + "</span>")
            yield (sess, case.chat, "", evidence_html(case.evidence, set(final_cited)), trace_html(case.tool_calls),
                   *view_outputs(case, "Default", 0, overlay_on), status)

        def build_report(case: CaseState) -> Report:
            summ = agent.summary(case.case_id)
            if callable(getattr(agent, "evidence", None)):  # model facts for the Findings' citations
                try:
                    for item in agent.evidence(case.case_id):
                        view = evidence_view(item)
                        case.evidence[view["id"]] = view
                except RadconsultError as exc:
                    log.warning("evidence ledger unavailable: %s", exc)
            data = None
            for name in ("to_dict", "as_dict", "to_json_dict", "model_dump"):
                fn = getattr(summ, name, None)
                if callable(fn):
                    data = fn()
                    break
            if data is None and callable(getattr(summ, "to_json", None)):
                import json

                data = json.loads(summ.to_json())
            sections: list[tuple[str, str]] = []
            if isinstance(data, dict):
                secs = data.get("sections")
                if isinstance(secs, dict):
                    sections = [(str(k), _section_text(v)) for k, v in secs.items()]
                elif isinstance(secs, list):
                    sections = [(str(_get(s, "heading", "title", "name", default="Section")),
                                 _section_text(_get(s, "text", "body", "sentences", default=""))) for s in secs]
                else:
                    # every section is shown, empty ones say so: a reader must see that nothing was found
                    for key in ("clinical_question", "technique", "findings", "comparison", "impression",
                                "recommendations", "limitations"):
                        text = _section_text(data.get(key)) if data.get(key) not in (None, "", []) else ""
                        sections.append((key.replace("_", " ").capitalize(), text or "None recorded."))
                for item in data.get("evidence", []) or data.get("references", []) or []:
                    if isinstance(item, dict) and item.get("id"):
                        case.evidence.setdefault(str(item["id"]), evidence_view(item))
            if not sections:
                md = summ.to_markdown() if callable(getattr(summ, "to_markdown", None)) else str(summ)
                sections = [("Summary", md)]
            text = " ".join(t for _, t in sections)
            cited = set(_CITE_RE.findall(text))
            ev = tuple(EvidenceRef(**{k: v for k, v in e.items() if k in EvidenceRef.__dataclass_fields__
                                      and k != "url"})
                       for eid, e in case.evidence.items() if eid in cited or not cited)
            st = case.study
            study = None
            if st is not None and getattr(st, "study_uid", None):
                study = StudyRef(study_uid=st.study_uid, series_uid=st.series_uid,
                                 sop_instance_uids=tuple(st.sop_instance_uids), sop_class_uid=st.sop_class_uid,
                                 modality=_get(st.metadata, "modality"))
            models = tuple({"name": e["model"], "version": str(e.get("model_version") or ""),
                            "intended_use": e.get("intended_use") or next(
                                (c["intended_use"] for c in cards if c["name"] == e["model"]), DEFAULT_INTENDED_USE)}
                           for e in {e["model"]: e for e in case.evidence.values() if e.get("model")}.values())
            return Report(case_id=case.case_id, patient_key=case.patient_key, sections=tuple(sections),
                          evidence=ev, models=models, study=study)

        def on_draft(st, request: gr.Request):
            from agent.exports import to_markdown

            sess = session(st, request)
            case = sess.case
            try:
                if case.report_version is not None and reports.load(case.case_id, case.report_version).is_signed:
                    note = "Signed summaries are immutable: this draft is a new version."
                else:
                    note = ""
                rv = reports.save_draft(build_report(case), user=user_of(request))
                case.report_version = rv.version
                audit.append("summary", user=user_of(request), case_id=case.case_id,
                             evidence_ids=[e.id for e in rv.report.evidence],
                             details={"version": rv.version, "content_sha256": rv.report.content_hash()})
                body = to_markdown(rv)
                return (sess, (f"_{note}_\n\n" if note else "") + link_citations(body), summary_status(case),
                        sections_to_text(rv.report.sections))
            except RadconsultError as exc:
                return sess, f"⚠ {exc}", summary_status(case), gr.update()

        def on_save_edit(text, st, request: gr.Request):
            from dataclasses import replace as dc_replace

            from agent.exports import to_markdown

            sess = session(st, request)
            case = sess.case
            try:
                if case.report_version is None:
                    raise InputError("draft a summary first")
                current = reports.load(case.case_id, case.report_version)
                new = dc_replace(current.report, sections=text_to_sections(text))
                rv = reports.edit(case.case_id, current.version, new, user=user_of(request))
                case.report_version = rv.version
                audit.append("summary", user=user_of(request), case_id=case.case_id,
                             evidence_ids=[e.id for e in rv.report.evidence],
                             details={"version": rv.version, "edited": True, "supersedes": rv.supersedes,
                                      "content_sha256": rv.report.content_hash()})
                note = (f"_Signed v{current.version} is unchanged; this edit is v{rv.version}._\n\n"
                        if current.is_signed else "")
                return sess, note + link_citations(to_markdown(rv)), summary_status(case)
            except RadconsultError as exc:
                return sess, gr.update(), f"⚠ {html.escape(str(exc))}<br>" + summary_status(case)

        def on_sign(st, request: gr.Request):
            from agent.exports import to_markdown

            sess = session(st, request)
            case = sess.case
            user = user_of(request)
            try:
                if case.report_version is None:
                    raise InputError("draft a summary first")
                if not user:
                    raise InputError("signing needs a logged-in clinician: start the UI with users "
                                     "(`radconsult users add NAME`)")
                rv = reports.sign(case.case_id, case.report_version, user=user)
                audit.append("sign", user=user, case_id=case.case_id,
                             evidence_ids=[e.id for e in rv.report.evidence],
                             details={"version": rv.version, "content_sha256": rv.content_hash})
                return sess, link_citations(to_markdown(rv)), summary_status(case)
            except RadconsultError as exc:
                return sess, gr.update(), f"⚠ {html.escape(str(exc))}<br>" + summary_status(case)

        def make_export(fmt: str):
            def on_export(st, request: gr.Request):
                from agent.exports import export

                sess = session(st, request)
                case = sess.case
                try:
                    if case.report_version is None:
                        raise InputError("draft a summary first")
                    rv = reports.load(case.case_id, case.report_version)
                    path = export(rv, fmt, sess.dir / "exports")
                    audit.append("export", user=user_of(request), case_id=case.case_id,
                                 evidence_ids=[e.id for e in rv.report.evidence],
                                 details={"format": fmt, "version": rv.version, "status": rv.status})
                    return gr.update(value=str(path), visible=True), summary_status(case)
                except RadconsultError as exc:
                    return (gr.update(value=None, visible=False),
                            f"⚠ {html.escape(str(exc))}<br>" + summary_status(case))
            on_export.__annotations__["request"] = gr.Request
            return on_export

        def on_unload(request: gr.Request):
            # Gradio reports a disconnect (tab closed, or a dropped connection it may resume): delete
            # the session's files after a grace period unless the session is used again meanwhile.
            # gr.State's delete_callback removes them in any case when Gradio expires the state.
            key = getattr(request, "session_hash", None)
            with sessions_lock:
                sess = sessions.get(key) if key else None
            if sess is None:
                return
            sess.closed_at = time.time()

            def reap() -> None:
                if sess.closed_at is not None and time.time() - sess.closed_at >= UNLOAD_GRACE_S - 1:
                    with sessions_lock:
                        sessions.pop(key, None)
                    sess.close()

            timer = threading.Timer(UNLOAD_GRACE_S, reap)
            timer.daemon = True
            timer.start()

        for fn in (on_load, on_new_case, on_switch, on_upload, on_view, on_ask, on_draft, on_sign, on_unload,
                   on_save_edit):
            fn.__annotations__["request"] = gr.Request  # string annotations: tell Gradio what to inject
        priv = {"api_visibility": "private"}
        demo.load(on_load, [state], [state, *case_comps], **priv)
        new_btn.click(on_new_case, [state], [state, *case_comps], **priv)
        case_dd.input(on_switch, [case_dd, state], [state, *case_comps], **priv)
        upload.upload(on_upload, [upload, state], [state, upload_msg, upload, *case_comps], **priv)
        for comp in (preset, slice_sl, overlay):
            comp.input(on_view, [preset, slice_sl, overlay, state], view_comps, show_progress="hidden", **priv)
        ask_out = [state, chatbot, question, evidence, trace, *view_comps, turn_status]
        ask_kw = {"concurrency_id": "llm", "concurrency_limit": 1, **priv}
        send.click(on_ask, [question, state], ask_out, **ask_kw)
        question.submit(on_ask, [question, state], ask_out, **ask_kw)
        draft_btn.click(on_draft, [state], [state, summary_md, sum_status, edit_box], concurrency_id="llm",
                        concurrency_limit=1, **priv)
        save_btn.click(on_save_edit, [edit_box, state], [state, summary_md, sum_status], **priv)
        sign_btn.click(on_sign, [state], [state, summary_md, sum_status], **priv)
        md_btn.click(make_export("md"), [state], [export_file, sum_status], **priv)
        pdf_btn.click(make_export("pdf"), [state], [export_file, sum_status], **priv)
        sr_btn.click(make_export("sr"), [state], [export_file, sum_status], **priv)
        demo.unload(on_unload)
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=settings.concurrency)
    demo.rc_exports_root = exports_root  # type: ignore[attr-defined]
    return demo


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


def _section_text(value: Any) -> str:
    """A summary section as Markdown: a string as is, a list as bullets with their [E#] citations."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        parts = []
        for v in value:
            if isinstance(v, str):
                parts.append(v)
            else:
                t = str(_get(v, "text", "sentence", default=""))
                cites = _get(v, "cites", "citations", "evidence_ids", default=[]) or []
                missing = [c for c in cites if f"[{c}]" not in t]
                parts.append(t + "".join(f" [{c}]" for c in missing))
        parts = [p for p in parts if p]
        return parts[0] if len(parts) == 1 else "\n".join(f"- {p}" for p in parts)
    return str(value or "")


def launch(demo: Any, settings: Settings, *, host: str, port: int,
           auth: Callable[[str, str], bool] | None, block: bool = True) -> Any:
    """Start ``demo`` with the page theme, the upload limit and only the session directories served."""
    if auth is None and not is_loopback(host):
        raise InputError(f"refusing to bind {host} without authentication")
    root = getattr(demo, "rc_exports_root", settings.cache_dir / "ui-sessions")
    Path(root).mkdir(parents=True, exist_ok=True)
    AuditLog.from_settings(settings).append("ui_start", user=None,
                                             details={"loopback": is_loopback(host), "auth": auth is not None})
    return demo.launch(
        server_name=host, server_port=port, auth=auth,
        auth_message="radconsult: log in with the account from `radconsult users add`.",
        max_file_size=settings.max_upload_bytes, allowed_paths=[str(root)],
        blocked_paths=[str(p) for p in (settings.kb_dir, settings.audit_log_path, settings.users_path,
                                        settings.secret_path, settings.cases_db_path, settings.data_dir / "reports",
                                        settings.integrity_key_file.parent)],
        show_error=False, quiet=True, footer_links=[], prevent_thread_lock=not block,
        theme=_theme(), css=CSS, ssr_mode=False, pwa=False, mcp_server=False,
    )
