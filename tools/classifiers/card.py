"""The model card as Markdown: written to a bundle's docs/README.md (MONAI layout) by training."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _row(split: str, m: dict[str, Any]) -> str:
    return (f"| {split} | {m.get('n')} | {m.get('auc')} | {m.get('acc')} | {m.get('ece')} | {m.get('brier')} "
            f"| {m.get('sensitivity')} | {m.get('specificity')} | {m.get('ood_flag_rate')} |")


def render(metadata: dict[str, Any]) -> str:
    m = metadata
    metrics = m.get("metrics", {})
    cal = m.get("calibration", {})
    train = m.get("training", {})
    lines = [
        f"# {m.get('name')} {m.get('version')}",
        "",
        f"{m.get('description')}",
        "",
        f"- **Architecture:** {m.get('architecture')}",
        f"- **Training data:** {m.get('data_source')}; licence {m.get('data_licence')}",
        f"- **Intended use:** {m.get('intended_use')}",
        f"- **Limitations:** {m.get('limitations')}",
        f"- **Labels:** {', '.join(m.get('labels', []))}; decision on P({m.get('positive_label')})",
        f"- **Calibration:** temperature {cal.get('temperature')} (fitted on val); threshold "
        f"{cal.get('threshold')} ({cal.get('threshold_rule')})",
    ]
    if cal.get("note"):
        lines.append(f"- **Note:** {cal['note']}")
    ood = m.get("ood", {})
    lines += [
        f"- **Out-of-distribution flag:** {ood.get('method')} on the input of `{ood.get('feature_layer', 'fc')}`, "
        f"threshold {ood.get('threshold')} (val {ood.get('percentile')}th percentile)",
        f"- **Reproduce:** `{train.get('command')}` (seed {train.get('seed')}, {train.get('epochs')} epochs, "
        f"1 CPU thread; {train.get('seconds')} s here)",
        "",
        "| split | n | AUC | ACC | ECE (15 bins) | Brier | sensitivity | specificity | OOD flag rate |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        _row("val", metrics.get("val", {})),
        _row("test", metrics.get("test", {})),
        "",
        "Decision support, not a diagnosis. Model selection, temperature and threshold use val only"
        + (" (but see the note above)." if cal.get("note") else "; the test split is evaluated once."),
        "",
    ]
    return "\n".join(lines)


def write(bundle_dir: Path, metadata: dict[str, Any]) -> Path:
    path = Path(bundle_dir) / "docs" / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(metadata), encoding="utf-8")
    return path
