"""The model card as Markdown: written to a bundle's docs/README.md (MONAI layout) by training.

Everything comes from ``configs/metadata.json``: what the model is, its data and licence (with credit
to the data set's authors), intended use and the statement every result carries, preprocessing,
calibration, the OOD flag, the measured metrics beside the published anchors, the cross-validation
table and OOD firing rates when they were measured, and the commands that reproduce them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}".rstrip("0").rstrip(".") if v == v else "nan"
    return str(v)


def _binary_table(metrics: dict[str, Any]) -> list[str]:
    rows = ["| split | n | AUC | ACC | sensitivity | specificity | ECE (15 bins) | Brier | OOD flag rate |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for split in ("val", "test"):
        m = metrics.get(split) or {}
        rows.append(f"| {split} | {_fmt(m.get('n'))} | {_fmt(m.get('auc'))} | {_fmt(m.get('acc'))} | "
                    f"{_fmt(m.get('sensitivity'))} | {_fmt(m.get('specificity'))} | {_fmt(m.get('ece'))} | "
                    f"{_fmt(m.get('brier'))} | {_fmt(m.get('ood_flag_rate'))} |")
    return rows


def _multiclass_table(metrics: dict[str, Any], labels: list[str]) -> list[str]:
    rows = ["| split | n | macro AUC | ACC | " + " | ".join(f"recall {lab}" for lab in labels)
            + " | ECE (15 bins) | Brier | OOD flag rate |",
            "| --- " * (7 + len(labels)) + "|"]
    for split in ("val", "test"):
        m = metrics.get(split) or {}
        recall = m.get("per_class_recall") or {}
        rows.append(f"| {split} | {_fmt(m.get('n'))} | {_fmt(m.get('auc'))} | {_fmt(m.get('acc'))} | "
                    + " | ".join(_fmt(recall.get(lab)) for lab in labels)
                    + f" | {_fmt(m.get('ece'))} | {_fmt(m.get('brier'))} | {_fmt(m.get('ood_flag_rate'))} |")
    return rows


def _anchors(m: dict[str, Any]) -> list[str]:
    anchors = m.get("anchors") or []
    if not anchors:
        return []
    test = (m.get("metrics") or {}).get("test") or {}
    keys = [k for k in ("acc", "auc", "sensitivity", "specificity") if any(k in a for a in anchors) or k in test]
    head = "| result | setting | " + " | ".join(k.upper() if len(k) == 3 else k for k in keys) + " |"
    rows = ["", "Measured beside the published results on the same data:", "", head,
            "| --- | --- |" + " --- |" * len(keys)]
    rows.append(f"| **this model ({m.get('name')} {m.get('version')})** | {m.get('anchor_setting', 'test split above')} | "
                + " | ".join(f"**{_fmt(test.get(k))}**" for k in keys) + " |")
    for a in anchors:
        rows.append(f"| {a.get('source')} | {a.get('setting', '')} | " + " | ".join(_fmt(a.get(k)) for k in keys) + " |")
    return rows


def _cv(m: dict[str, Any]) -> list[str]:
    cv = (m.get("metrics") or {}).get("cv")
    if not cv:
        return []
    labels = m.get("labels", [])
    rows = ["", f"Cross-validation ({cv.get('note', '')}):", "",
            "| test fold | val fold | n | ACC | macro AUC | " + " | ".join(f"recall {lab}" for lab in labels)
            + " | ECE | Brier |", "| --- " * (7 + len(labels)) + "|"]
    for f in cv.get("folds", []):
        recall = f.get("per_class_recall") or {}
        rows.append(f"| {f.get('test_fold')} | {f.get('val_fold')} | {_fmt(f.get('n'))} | {_fmt(f.get('acc'))} | "
                    f"{_fmt(f.get('auc'))} | " + " | ".join(_fmt(recall.get(lab)) for lab in labels)
                    + f" | {_fmt(f.get('ece'))} | {_fmt(f.get('brier'))} |")
    mean, sd = cv.get("mean") or {}, cv.get("sd") or {}
    mean_recall, sd_recall = mean.get("per_class_recall") or {}, sd.get("per_class_recall") or {}

    def cell(value: Any, spread: Any) -> str:
        return _fmt(value) + (f" +- {_fmt(spread)}" if spread is not None else "")

    rows.append(f"| **mean +- sd** | | {_fmt(mean.get('n'))} | **{cell(mean.get('acc'), sd.get('acc'))}** | "
                f"{cell(mean.get('auc'), sd.get('auc'))} | "
                + " | ".join(cell(mean_recall.get(lab), sd_recall.get(lab)) if lab in mean_recall else ""
                             for lab in labels)
                + f" | {cell(mean.get('ece'), sd.get('ece'))} | {cell(mean.get('brier'), sd.get('brier'))} |")
    if cv.get("command"):
        rows += ["", f"Reproduce: `{cv['command']}`"]
    return rows


def _test_reads(m: dict[str, Any]) -> list[str]:
    reads = m.get("test_reads") or []
    if not reads:
        return []
    rows = ["", "Every read of the test split (selection, TTA, temperature and threshold used val only):", "",
            "| when (UTC) | command | n | purpose | ACC | AUC |", "| --- | --- | --- | --- | --- | --- |"]
    for r in reads:
        rows.append(f"| {r.get('at')} | `{r.get('command')}` | {_fmt(r.get('n'))} | {r.get('purpose')} | "
                    f"{_fmt(r.get('acc'))} | {_fmt(r.get('auc'))} |")
    return rows


def _ood_report(m: dict[str, Any]) -> list[str]:
    report = m.get("ood_report")
    if not report:
        return []
    rows = ["", f"How often the OOD flag fires ({report.get('note', '')}):", "",
            "| images | n | flagged | rate |", "| --- | --- | --- | --- |"]
    for r in report.get("sources", []):
        rows.append(f"| {r.get('source')} | {r.get('n')} | {r.get('flagged')} | {_fmt(r.get('rate'))} |")
    if report.get("command"):
        rows += ["", f"Reproduce: `{report['command']}`"]
    return rows


def render(metadata: dict[str, Any]) -> str:
    m = metadata
    metrics = m.get("metrics", {})
    cal = m.get("calibration", {})
    train = m.get("training", {})
    labels = list(m.get("labels", []))
    multiclass = len(labels) > 2
    lines = [f"# {m.get('name')} {m.get('version')}", "", f"{m.get('description')}", ""]
    if m.get("result_statement"):
        lines += [f"> **Read every result as:** {m['result_statement']}", ""]
    decision = ("the most probable label" if multiclass else f"P({m.get('positive_label')}) against the threshold")
    lines += [
        f"- **Architecture:** {m.get('architecture')}",
        f"- **Training data:** {m.get('data_source')}",
        f"- **Data licence and credit:** {m.get('data_licence')}",
        f"- **Intended use:** {m.get('intended_use')}",
        f"- **Limitations:** {m.get('limitations')}",
        f"- **Labels:** {', '.join(labels)}; decision: {decision}",
    ]
    pre = m.get("preprocessing") or {}
    if pre.get("geometry"):
        border = "dark margins cut, then " if pre.get("border") == "crop-dark" else ""
        lines.append(f"- **Preprocessing (training and inference alike):** {border}{pre.get('geometry')} to "
                     f"{'x'.join(str(s) for s in pre.get('size', []))} (area resize), intensity {pre.get('intensity')}"
                     + (f" {pre.get('percentiles')}" if pre.get("percentiles") else "")
                     + f", then (x - {pre.get('mean')}) / {pre.get('std')}; TTA {', '.join(m.get('tta', [])) or 'none'}")
    split = (m.get("dataset") or {}).get("split_rule") or {}
    if split:
        lines.append(f"- **Splits:** {split.get('rule')}")
    lines.append(f"- **Calibration:** temperature {cal.get('temperature')} (fitted on val); "
                 + ("decision = the most probable label" if multiclass else
                    f"threshold {cal.get('threshold')} ({cal.get('threshold_rule')})"))
    if cal.get("note"):
        lines.append(f"- **Note:** {cal['note']}")
    ood = m.get("ood", {})
    lines.append(f"- **Out-of-distribution flag:** {ood.get('method')} on the input of "
                 f"`{ood.get('feature_layer', 'fc')}`, threshold {ood.get('threshold')} (val {ood.get('percentile')}th "
                 "percentile)")
    timing = f"{train.get('seconds')} s wall"
    if train.get("cpu_seconds"):
        timing += f", {train.get('cpu_seconds')} CPU-s"
    if train.get("optimizer"):
        lines.append(f"- **Training:** {train.get('optimizer')}; {train.get('resolution', '')}; "
                     f"{train.get('loss')}; augmentation: {train.get('augmentation')}")
    kept = [k.get("kept") for k in train.get("kept") or [] if isinstance(k, dict)]
    if kept or train.get("tta_on_val"):
        tried = "; ".join(f"{'+'.join(r.get('tta') or []) or 'none'}: val {r.get('val_key')} (NLL {r.get('val_nll')})"
                          for r in train.get("tta_on_val") or [])
        lines.append(f"- **Chosen on val:** {', '.join(str(k) for k in kept) or '-'}"
                     + (f"; test-time views tried: {tried}" if tried else ""))
    if train.get("budget_min"):
        b = train.get("budget") or {}
        lines.append(f"- **Time budget:** {train['budget_min']} min for the whole command became {train.get('epochs')} "
                     f"epochs ({b.get('seconds_per_step_full')} s per step at full size measured before training); "
                     f"run as `{train.get('run_as')}`")
    lines.append(f"- **Reproduce:** `{train.get('command')}` (seed {train.get('seed')}, {train.get('epochs')} "
                 f"epochs, {train.get('threads', 1)} CPU thread(s); {timing} here)")
    if train.get("data_file", "").endswith(".tar"):
        lines.append(f"- **Evaluate:** `radconsult models eval {m.get('name')} --data {train.get('data_file')} "
                     "--split test --json`")
    lines += ["", *(_multiclass_table(metrics, labels) if multiclass else _binary_table(metrics))]
    lines += _anchors(m) + _test_reads(m) + _cv(m) + _ood_report(m)
    refs = m.get("references") or []
    if refs:
        lines += ["", "References:", "", *[f"- {r}" for r in refs]]
    lines += ["", "Decision support, not a diagnosis. Model selection, temperature and threshold use val only"
              + (" (but see the note above)." if cal.get("note") else "; every read of the test split is listed above"
                 if m.get("test_reads") else "; the test split is evaluated once."), ""]
    return "\n".join(lines)


def write(bundle_dir: Path, metadata: dict[str, Any]) -> Path:
    path = Path(bundle_dir) / "docs" / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(metadata), encoding="utf-8")
    return path
