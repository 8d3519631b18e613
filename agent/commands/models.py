"""Classifier subcommands: ``classify``, ``models list``, ``models train``, ``models eval``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="classify a 2-D image with a MONAI classifier bundle",
                       description="Classify one image (DICOM/PNG/JPEG). The model is chosen from the DICOM "
                                   "metadata unless --model names one; PNG/JPEG carry no metadata, so they "
                                   "need --model.")
    p.add_argument("path", type=Path, help="image file")
    p.add_argument("--model", help="classifier name (see `radconsult models list`)")
    p.add_argument("--saliency", type=Path, metavar="OUT.png",
                   help="write a Grad-CAM overlay at the image's original resolution")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_classify)

    models = sub.add_parser("models", help="list, train and evaluate classifier bundles")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    ls = msub.add_parser("list", help="registered classifiers with their model cards")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    tr = msub.add_parser("train", help="train a bundled recipe and write a MONAI bundle")
    tr.add_argument("name", help="recipe name: pneumonia-cxr or breast-us")
    tr.add_argument("--data", type=Path, required=True, help="MedMNIST-style .npz (train/val/test splits)")
    tr.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--epochs", type=int, help="override the recipe's epochs (quick runs)")
    tr.add_argument("--limit", type=int, help="use at most this many train and val images (smoke runs)")
    tr.add_argument("--threads", type=int, default=1, help="CPU threads (bit-exact results need the same count)")
    tr.add_argument("--json", action="store_true")
    tr.set_defaults(func=cmd_train)

    ev = msub.add_parser("eval", help="AUC, ACC, ECE (15 bins), Brier and n of a classifier on a split")
    ev.add_argument("name", help="classifier name, or a bundle directory")
    ev.add_argument("--data", type=Path, required=True, help="MedMNIST-style .npz")
    ev.add_argument("--split", default="test", choices=("train", "val", "test"))
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_eval)
    models.set_defaults(func=lambda args, settings: (models.print_help(), 1)[1])


def _bundle(name: str, settings: Any):
    from tools.classifiers.bundle import Bundle
    from tools.classifiers.registry import get_bundle

    path = Path(name)
    if ("/" in name or name.startswith(".")) and path.is_dir():
        return Bundle.read(path)
    return get_bundle(name, settings)


def cmd_classify(args: argparse.Namespace, settings: Any) -> int:
    from agent.cli import print_json
    from agent.wiring import imaging_config
    from tools.classifiers.inference import classify
    from tools.imaging import load

    study = load(args.path, imaging_config(settings))
    finding = classify(study, model=args.model, settings=settings, saliency_png=args.saliency)
    if args.json:
        print_json(finding.as_dict())
        return 0
    card = finding.model_card
    print(finding.text())
    print(f"  model: {finding.model} {finding.model_version} ({finding.model_selection})")
    if not finding.abstain:
        probs = ", ".join(f"{k} {v:.3f}" for k, v in finding.probabilities.items())
        print(f"  calibrated probabilities: {probs}")
        print(f"  OOD score: {finding.ood_score} (threshold {finding.ood_threshold})"
              + (" FLAGGED" if finding.ood_flag else ""))
    for c in finding.cautions:
        print(f"  caution: {c}")
    if finding.saliency_png:
        print(f"  saliency overlay: {finding.saliency_png}")
    test = (card.get("metrics") or {}).get("test") or {}
    if test:
        print(f"  test metrics: AUC {test.get('auc')}, ACC {test.get('acc')}, ECE {test.get('ece')} "
              f"(n={test.get('n')})")
    print(f"  trained on: {card.get('training_data')}")
    print(f"  intended use: {card.get('intended_use')}")
    print(f"  {finding.disclaimer}")
    return 0


def cmd_list(args: argparse.Namespace, settings: Any) -> int:
    from agent.cli import print_json
    from tools.classifiers.registry import list_models

    bundles = list_models(settings)
    if args.json:
        print_json([{**b.card(), "path": str(b.path),
                     "weights_present": b.weights_path.is_file()} for b in bundles])
        return 0
    if not bundles:
        print("no classifiers registered")
        return 0
    for b in bundles:
        test = (b.metadata.get("metrics") or {}).get("test") or {}
        metric = f"test AUC {test.get('auc')} ACC {test.get('acc')}" if test else "no test metrics"
        print(f"{b.name:<18} {b.version:<8} {'/'.join(b.labels):<28} {metric}  [{b.path}]")
    return 0


def cmd_train(args: argparse.Namespace, settings: Any) -> int:
    import sys

    from agent.cli import print_json
    from tools.classifiers.bundle import Bundle
    from tools.classifiers.train import train

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    out = train(args.name, args.data, args.out, seed=args.seed, epochs=args.epochs, limit=args.limit,
                threads=args.threads, progress=progress)
    bundle = Bundle.read(out)
    metrics = bundle.metadata.get("metrics", {})
    if args.json:
        print_json({"bundle": str(out), "name": bundle.name, "metrics": metrics,
                    "calibration": bundle.metadata.get("calibration")})
    else:
        print(f"wrote bundle {bundle.name} to {out}")
        for split in ("val", "test"):
            m = metrics.get(split, {})
            print(f"  {split}: AUC {m.get('auc')} ACC {m.get('acc')} ECE {m.get('ece')} "
                  f"Brier {m.get('brier')} n={m.get('n')}")
    return 0


def cmd_eval(args: argparse.Namespace, settings: Any) -> int:
    from agent.cli import print_json
    from tools.classifiers.evaluate import evaluate_bundle

    result = evaluate_bundle(_bundle(args.name, settings), args.data, args.split, settings.device)
    if args.json:
        print_json(result)
    else:
        print(f"{result['model']} {result['version']} on {result['data']} [{result['split']}]: "
              f"AUC {result['auc']} ACC {result['acc']} ECE {result['ece']} Brier {result['brier']} "
              f"n={result['n']}" + (f", OOD flag rate {result['ood_flag_rate']}" if "ood_flag_rate" in result
                                    else ""))
    return 0
