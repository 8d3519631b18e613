"""Intended-use checks: which bundle fits a study, and when a bundle must abstain or caution.

Rules live in each bundle's metadata (``intended_use_rules``)::

    {"modalities": ["CR", "DX"], "body_parts": ["CHEST"], "excluded_views": ["LL", "LAT"],
     "age_years": [0, 5], "age_note": "...", "require_body_part": false,
     "grey_only": true, "min_side_px": 128, "caution_series_words": ["T2", "FLAIR"],
     "series_note": "contrast-enhanced T1-weighted slices"}

Abstain: a recorded modality, body part or view outside the rules (or no body part where the bundle
requires one); and, from the pixels, a colour image sent to a grey-scale model (``grey_only``) or an
image smaller than ``min_side_px`` on a side. Caution: inputs the model can run on but was not trained
for (an age outside the range, missing metadata that would have been checked).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tools.classifiers.bundle import Bundle
from tools.errors import NoApplicableModelError
from tools.imaging import SafeMetadata

UNKNOWN_MODALITIES = {"", "OT", "SC", "XC"}  # secondary capture / PNG / JPEG: modality not recorded
LATERAL_WORDS = ("LATERAL",)
COLOUR_CHROMA = 0.06  # mean (max - min) over RGB channels above which an image counts as colour


@dataclass(frozen=True)
class UseCheck:
    abstain_reason: str | None
    cautions: tuple[str, ...]


def _modality(md: SafeMetadata) -> str | None:
    m = (md.modality or "").strip().upper()
    return None if m in UNKNOWN_MODALITIES else m


def _body_part(md: SafeMetadata, allowed: list[str]) -> tuple[str | None, bool | None]:
    """(what was recorded, whether it matches ``allowed``); (None, None) when nothing was recorded."""
    bp = (md.body_part or "").strip().upper()
    if bp:
        return bp, any(a in bp for a in allowed)
    text = " ".join(x for x in (md.study_description, md.series_description) if x).upper()
    if any(a in text for a in allowed):
        return text, True
    return None, None


def check(bundle: Bundle, md: SafeMetadata) -> UseCheck:
    rules = bundle.intended_use_rules
    modalities = [m.upper() for m in rules.get("modalities", [])]
    parts = [p.upper() for p in rules.get("body_parts", [])]
    excluded = [v.upper() for v in rules.get("excluded_views", [])]
    cautions: list[str] = []
    modality = _modality(md)
    allowed_text = f"{'/'.join(modalities) or 'any modality'} {'/'.join(parts).lower() or ''}".strip()
    if modalities and modality is not None and modality not in modalities:
        return UseCheck(f"{bundle.name} is intended for {allowed_text} images; this is {modality}", ())
    if modality is None and modalities:
        cautions.append("no modality recorded (PNG/JPEG or secondary capture): the image could not be "
                        f"checked against the intended use ({allowed_text})")
    if parts:
        recorded, matches = _body_part(md, parts)
        if matches is False:
            return UseCheck(f"{bundle.name} is intended for {'/'.join(parts).lower()} images; the body part "
                            f"recorded is {recorded}", ())
        if matches is None:
            if rules.get("require_body_part") and modality is not None:
                return UseCheck(f"{bundle.name} analyses only {allowed_text} images and this image records "
                                "no body part, so it cannot be confirmed as one", ())
            if modality is not None:
                cautions.append(f"no body part recorded: assumed {parts[0].lower()}")
    view = (md.view_position or "").strip().upper()
    desc = " ".join(x for x in (md.series_description, md.study_description) if x).upper()
    if excluded and (view in excluded or any(w in desc for w in LATERAL_WORDS)):
        return UseCheck(f"{bundle.name} is intended for frontal views; this is a lateral or oblique view "
                        f"({view or 'from the description'})", ())
    words = [w.upper() for w in rules.get("caution_series_words", [])]
    hits = [w for w in words if re.search(rf"(?<![A-Z0-9]){re.escape(w)}(?![A-Z0-9])", desc)]
    if hits:
        cautions.append(f"the series is described as {'/'.join(hits)}; the model was trained on "
                        f"{rules.get('series_note', 'other series')}")
    ages = rules.get("age_years")
    if ages:
        note = rules.get("age_note") or f"ages {ages[0]}-{ages[1]}"
        age = md.patient_age_years
        if age is None:
            cautions.append(f"patient age not recorded; the model was trained on {note}")
        elif not ages[0] <= age <= ages[1]:
            who = "an adult" if age >= 18 else "outside the training ages"
            shown = f"{age:.0f}" if age >= 2 else f"{age:.1f}"
            cautions.append(f"patient is {shown} years old ({who}); the model was trained on {note}, so its "
                            "probabilities may not transfer")
    return UseCheck(None, tuple(cautions))


def chroma(display: np.ndarray) -> float:
    """Mean per-pixel spread between the RGB channels, in [0, 1]; 0 for a grey image (also RGB-encoded grey)."""
    arr = np.asarray(display)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        return 0.0
    rgb = arr[..., :3]
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 65536)))  # a strided sample is enough
    sample = rgb[::step, ::step].astype(np.float32)
    return float((sample.max(axis=-1) - sample.min(axis=-1)).mean())


def check_pixels(bundle: Bundle, display: np.ndarray) -> str | None:
    """Abstention reason from the pixels themselves, or None: colour input to a grey-scale model, or an
    image too small for the model's training resolution."""
    rules = bundle.intended_use_rules
    arr = np.asarray(display)
    if rules.get("grey_only"):
        c = chroma(arr)
        if c > COLOUR_CHROMA:
            return (f"{bundle.name} reads grey-scale {'/'.join(rules.get('modalities', [])) or ''} images; this "
                    f"is a colour image (mean channel spread {c:.2f}), such as a photograph or a screenshot")
    min_side = rules.get("min_side_px")
    if min_side:
        h, w = (arr.shape[:2] if arr.ndim == 3 and arr.shape[-1] in (3, 4) else arr.shape[-2:])
        if min(h, w) < int(min_side):
            return (f"the image is only {h}x{w} pixels; {bundle.name} was trained on "
                    f"{rules.get('training_px', 'larger')} images and needs at least {min_side} pixels per side")
    return None


def select(bundles: list[Bundle], md: SafeMetadata) -> tuple[Bundle, str]:
    """Pick the bundle intended for this study, with the reason; NoApplicableModelError otherwise."""
    modality = _modality(md)
    names = ", ".join(f"{b.name} ({'/'.join(b.intended_use_rules.get('modalities', [])) or 'any'} "
                      f"{'/'.join(b.intended_use_rules.get('body_parts', [])).lower()})" for b in bundles)
    if modality is None:
        raise NoApplicableModelError(
            "the image records no modality or body part (PNG/JPEG or secondary capture), so no classifier "
            f"can be chosen safely; name one with --model (available: {names})")
    scored: list[tuple[int, Bundle, str]] = []
    for b in bundles:
        rules = b.intended_use_rules
        if modality not in [m.upper() for m in rules.get("modalities", [])]:
            continue
        parts = [p.upper() for p in rules.get("body_parts", [])]
        recorded, matches = _body_part(md, parts) if parts else (None, True)
        if matches is False:
            continue
        score = 2 if matches else 1
        why = f"modality {modality}" + (f" and body part {recorded}" if matches and recorded else
                                        ", body part not recorded" if matches is None else "")
        scored.append((score, b, why))
    if not scored:
        part = f" {md.body_part}" if md.body_part else ""
        raise NoApplicableModelError(f"no classifier is intended for {modality}{part} images (available: "
                                     f"{names}); name one with --model to see its abstention")
    scored.sort(key=lambda t: -t[0])
    if len(scored) > 1 and scored[0][0] == scored[1][0]:
        tied = ", ".join(b.name for s, b, _ in scored if s == scored[0][0])
        raise NoApplicableModelError(f"several classifiers fit this {modality} image ({tied}); name one "
                                     "with --model")
    _, bundle, why = scored[0]
    return bundle, f"chosen from the image metadata: {why}"
