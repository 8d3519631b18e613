"""``classify(study) -> Finding``: the image finding the agent cites, with its model card.

The model is named or chosen from the study's safe metadata (see :mod:`intended_use`). The image is
validated and preprocessed exactly as in training, run through the bundle (TTA, temperature scaling),
thresholded at the bundle's validation-fitted threshold, and scored for out-of-distribution features.
A study outside the model's intended use (by its metadata, or by its pixels: colour input to a grey
model, too few pixels) gets ``abstain=True`` with the reason and no probabilities; one the model can run
on but was not trained for gets ``caution``. A series needs the slice to read (``slice_index``).
Decision support, not a diagnosis.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tools.classifiers import intended_use, registry
from tools.classifiers.bundle import Bundle
from tools.classifiers.calibration import softmax
from tools.classifiers.config import ClassifierConfig
from tools.classifiers.preprocess import CropBox, prepare_spec
from tools.classifiers.runtime import LoadedModel, load_model
from tools.errors import InvalidImageError
from tools.imaging import ImageStudy

log = logging.getLogger(__name__)

DISCLAIMER = "Decision support from a research model, not a diagnosis; a clinician must review the image."


@dataclass(frozen=True, eq=False)
class Finding:
    """One classifier result. Probabilities are calibrated (temperature scaling), in [0, 1].

    For a two-class model ``probability`` is P(positive label) and ``label`` follows the bundle's
    validation-fitted ``threshold``. For a model with more labels ``label`` is the most probable one,
    ``positive_label`` names it, ``probability`` is its probability and ``threshold`` is None.
    ``statement`` is what the model can and cannot say (for example "given that a tumour is present");
    every rendering of the result carries it.
    """

    model: str
    model_version: str
    labels: tuple[str, ...]
    positive_label: str                   # the label ``probability`` refers to
    threshold: float | None               # on P(positive_label), fitted on validation; None for multi-class
    probabilities: dict[str, float]       # per label; empty when abstaining
    probability: float | None             # P(positive_label); None when abstaining
    label: str | None                     # the decision; None when abstaining
    abstain: bool
    abstain_reason: str | None
    cautions: tuple[str, ...]
    ood_score: float | None               # Mahalanobis distance of features to the training classes
    ood_threshold: float | None           # 99th percentile of the validation scores
    ood_flag: bool
    model_selection: str                  # how the model was chosen
    model_card: dict[str, Any]
    device: str | None = None
    saliency: np.ndarray | None = field(default=None, repr=False)  # (H, W) in [0, 1], original size
    saliency_png: str | None = None
    statement: str | None = None
    disclaimer: str = DISCLAIMER

    @property
    def caution(self) -> str | None:
        """All cautions in one sentence, or None."""
        return "; ".join(self.cautions) if self.cautions else None

    def text(self) -> str:
        """One line for a transcript or the evidence ledger."""
        head = f"{self.model} {self.model_version}"
        tail = f" ({self.statement})" if self.statement else ""
        if self.abstain:
            return f"{head}: abstained ({self.abstain_reason}){tail}"
        if self.threshold is None:
            others = ", ".join(f"{k} {v:.2f}" for k, v in self.probabilities.items() if k != self.label)
            line = f"{head}: {self.label}, P({self.label}) = {self.probability:.2f} (others: {others})"
        else:
            line = (f"{head}: P({self.positive_label}) = {self.probability:.2f} (threshold "
                    f"{self.threshold:.2f}) -> {self.label}")
        if self.ood_flag:
            line += " [out-of-distribution]"
        if self.cautions:
            line += f"; caution: {self.caution}"
        return line + tail

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (the saliency array is left out; its PNG path is kept)."""
        return {
            "model": self.model, "model_version": self.model_version, "labels": list(self.labels),
            "positive_label": self.positive_label, "threshold": self.threshold,
            "probabilities": dict(self.probabilities), "probability": self.probability, "label": self.label,
            "abstain": self.abstain, "abstain_reason": self.abstain_reason, "caution": self.caution,
            "cautions": list(self.cautions), "ood_score": self.ood_score, "ood_threshold": self.ood_threshold,
            "ood_flag": self.ood_flag, "model_selection": self.model_selection, "device": self.device,
            "saliency_png": self.saliency_png, "statement": self.statement, "model_card": self.model_card,
            "disclaimer": self.disclaimer,
        }


def _display(study: ImageStudy, slice_index: int | None) -> np.ndarray:
    """The 2-D display image to classify: the study itself, or slice ``slice_index`` of a series."""
    display = np.asarray(study.display)
    if not study.is_volume:
        if slice_index not in (None, 0):
            raise InvalidImageError(f"slice {slice_index} was asked for, but the study is one 2-D image")
        return display
    n = study.shape[0]
    if slice_index is None:
        raise InvalidImageError(f"the study is a series of {n} slices and the classifiers read one 2-D image: "
                                f"say which slice to classify (slice 0-{n - 1}, e.g. the one shown in the viewer)")
    if not 0 <= slice_index < n:
        raise InvalidImageError(f"slice {slice_index} does not exist: the series has slices 0-{n - 1}")
    return display[slice_index]


def model_source(study: ImageStudy, display: np.ndarray, slice_index: int | None) -> np.ndarray:
    """The image the model's preprocessing starts from (``display`` is what the viewer shows).

    The display of a DICOM without a window in its header (or of a NIfTI volume) is clipped to a window the
    loader estimated at full resolution. The model's own percentile window runs after its resize, so that
    earlier clip changes its input (by up to 0.17 on an 8-bit MR slice against the JPEG it was made from)
    although the two hold the same values. The model reads such an image mapped linearly from its pixels
    instead, as a JPEG's values are; a window the file states is the file's presentation, and is kept.
    """
    if study.display_window != "estimated" or study.is_rgb:
        return display
    pixels = np.asarray(study.pixels)
    plane = pixels[slice_index or 0] if study.is_volume else pixels
    lo, hi = float(plane.min()), float(plane.max())
    if not hi > lo:
        return display
    out = np.subtract(plane, np.float32(lo), dtype=np.float32)
    out *= np.float32(1.0 / (hi - lo))
    if (study.metadata.photometric or "").upper() == "MONOCHROME1":
        np.subtract(1.0, out, out=out)
    return np.clip(out, 0.0, 1.0, out=out)


def _resolve(study: ImageStudy, model: str | None, config: ClassifierConfig) -> tuple[Bundle, str]:
    if model:
        return registry.get_bundle(model, config), f"named by the caller ({model})"
    return intended_use.select(registry.list_models(config), study.metadata)


def classify(study: ImageStudy, model: str | None = None, config: ClassifierConfig | None = None,
             saliency: bool = False, saliency_png: str | Path | None = None,
             slice_index: int | None = None) -> Finding:
    """Classify one 2-D image (or slice ``slice_index`` of a series). ``saliency_png`` writes the Grad-CAM
    overlay there (implies saliency). ``config=None`` runs the bundled models on the automatic device."""
    return classify_many([study], model=model, config=config, saliency=saliency,
                         saliency_pngs=[saliency_png] if saliency_png else None, slice_index=slice_index)[0]


def classify_many(studies: Sequence[ImageStudy], model: str | None = None, config: ClassifierConfig | None = None,
                  saliency: bool = False, saliency_pngs: Sequence[str | Path | None] | None = None,
                  slice_index: int | None = None) -> list[Finding]:
    """Classify several images, one batched forward pass per bundle (fast on a GPU). Same order out."""
    config = config if config is not None else ClassifierConfig()
    plans: list[tuple[Bundle, str, intended_use.UseCheck, np.ndarray, CropBox, np.ndarray]] = []
    for study in studies:
        bundle, why = _resolve(study, model, config)
        display = _display(study, slice_index)
        x, box = prepare_spec(model_source(study, display, slice_index), bundle.preprocess_spec)
        if x.shape[0] != bundle.input_channels:
            x = np.repeat(x, bundle.input_channels, axis=0)
        use = intended_use.check(bundle, study.metadata)
        if use.abstain_reason is None:
            reason = intended_use.check_pixels(bundle, display)
            if reason is not None:
                use = intended_use.UseCheck(reason, use.cautions)
        plans.append((bundle, why, use, x, box, display))

    results: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    by_bundle: dict[str, list[int]] = {}
    for i, (bundle, _, use, _, _, _) in enumerate(plans):
        if use.abstain_reason is None:
            by_bundle.setdefault(str(bundle.path), []).append(i)
    loaded_by_path = {}
    for path, idx in by_bundle.items():
        loaded = load_model(plans[idx[0]][0], config.device)
        loaded_by_path[path] = loaded
        logits, feats = loaded.predict(np.stack([plans[i][3] for i in idx]))
        for j, i in enumerate(idx):
            results[i] = (logits[j], feats[j] if feats is not None else None)

    findings = []
    for i, (bundle, why, use, x, box, display) in enumerate(plans):
        out_png = saliency_pngs[i] if saliency_pngs and i < len(saliency_pngs) else None
        if i not in results:
            findings.append(_abstained(bundle, why, use))
            continue
        logits, feats = results[i]
        loaded = loaded_by_path[str(bundle.path)]
        findings.append(_finding(bundle, why, use, logits, feats, x, box, display, loaded,
                                 saliency or out_png is not None, out_png))
    return findings


def _abstained(bundle: Bundle, why: str, use: intended_use.UseCheck) -> Finding:
    return Finding(model=bundle.name, model_version=bundle.version, labels=tuple(bundle.labels),
                   positive_label=bundle.positive_label,
                   threshold=None if bundle.multiclass else bundle.threshold, probabilities={},
                   probability=None, label=None, abstain=True, abstain_reason=use.abstain_reason,
                   cautions=use.cautions, ood_score=None,
                   ood_threshold=bundle.ood.threshold if bundle.ood else None, ood_flag=False,
                   model_selection=why, model_card=bundle.card(), statement=bundle.statement)


def _finding(bundle: Bundle, why: str, use: intended_use.UseCheck, logits: np.ndarray,
             feats: np.ndarray | None, x: np.ndarray, box: CropBox, display: np.ndarray, loaded: LoadedModel,
             want_saliency: bool, out_png: str | Path | None) -> Finding:
    probs = softmax(logits[None], bundle.temperature)[0]
    if bundle.multiclass:
        target = int(np.argmax(probs))
        label = shown = bundle.labels[target]
        threshold = None
    else:
        target = bundle.labels.index(bundle.positive_label)
        shown = bundle.positive_label
        threshold = round(bundle.threshold, 4)
        label = bundle.positive_label if probs[target] >= bundle.threshold else bundle.labels[1 - target]
    p_shown = float(probs[target])
    cautions = list(use.cautions)
    ood_score, ood_thr, ood_flag = None, None, False
    if bundle.ood is not None and feats is not None:
        ood_score = float(bundle.ood.score(feats[None])[0])
        ood_thr = float(bundle.ood.threshold)
        ood_flag = ood_score > ood_thr
        if ood_flag:
            cautions.append(f"the image is unlike the training data (OOD score {ood_score:.1f} > "
                            f"{ood_thr:.1f}, the 99th percentile on validation): treat the probability "
                            "as unreliable")
    heat, png = None, None
    if want_saliency:
        from tools.classifiers.saliency import grad_cam, save_overlay, to_original

        layer = bundle.saliency_layer
        if layer is None:
            cautions.append("this bundle names no saliency layer; no saliency map")
        else:
            with loaded.lock:
                small = grad_cam(loaded.network, x, layer, target, loaded.device)
            heat = to_original(small, box)
            if out_png is not None:
                png = str(save_overlay(Path(out_png), display, heat))
    return Finding(model=bundle.name, model_version=bundle.version, labels=tuple(bundle.labels),
                   positive_label=shown, threshold=threshold,
                   probabilities={lab: round(float(p), 4) for lab, p in zip(bundle.labels, probs, strict=True)},
                   probability=round(p_shown, 4), label=label, abstain=False, abstain_reason=None,
                   cautions=tuple(cautions), ood_score=None if ood_score is None else round(ood_score, 3),
                   ood_threshold=None if ood_thr is None else round(ood_thr, 3), ood_flag=ood_flag,
                   model_selection=why, model_card=bundle.card(), device=loaded.device, saliency=heat,
                   saliency_png=png, statement=bundle.statement)
