"""Classifier subcommands: ``classify``, ``models list``, ``models train``, ``models eval``, ``models cv``."""

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
    p.add_argument("--slice", type=int, dest="slice_index", metavar="N",
                   help="for a series or multi-frame image: the slice to classify (0-based)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_classify)

    models = sub.add_parser("models", help="list, train and evaluate classifier bundles")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    ls = msub.add_parser("list", help="registered classifiers with their model cards")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    tr = msub.add_parser("train", help="train a bundled recipe and write a MONAI bundle")
    tr.add_argument("name", help="recipe name: pneumonia-cxr, brain-mri-tumour or breast-us")
    tr.add_argument("--data", type=Path, required=True,
                    help="the recipe's data: kermany_chest_xray_224.tar (pneumonia-cxr), "
                         "figshare_cheng_brain_tumor_jpg.tar (brain-mri-tumour) or breastmnist.npz (breast-us)")
    tr.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--epochs", type=int, help="override the recipe's epochs (quick runs; or repeat a budgeted run "
                                               "exactly: its card gives the epochs)")
    tr.add_argument("--budget-min", type=float, metavar="MIN",
                    help="archive recipes: fit the number of epochs to MIN minutes for the whole command on this "
                         "machine (a timing probe first; the card records the epochs chosen)")
    tr.add_argument("--limit", type=int, help="use at most this many train and val images (smoke runs)")
    tr.add_argument("--skip-test", action="store_true",
                    help="archive recipes, smoke runs: do not read the test split (the card says so)")
    tr.add_argument("--test-fold", type=int, choices=range(1, 6), metavar="K",
                    help="brain-mri-tumour: test on fold K, select on the fold before it, train on the rest")
    tr.add_argument("--threads", type=int, help="CPU threads (default: every core this process may use for the "
                                                 "archive recipes, 1 for breast-us; bit-exact results need the same "
                                                 "count)")
    tr.add_argument("--json", action="store_true")
    tr.set_defaults(func=cmd_train)

    ev = msub.add_parser("eval", help="AUC, ACC, sensitivity/specificity or per-class recall, ECE (15 bins), "
                                      "Brier and n of a classifier on a split")
    ev.add_argument("name", help="classifier name, or a bundle directory")
    ev.add_argument("--data", type=Path, required=True,
                    help="the archive the bundle was trained from (.tar), or a MedMNIST-style .npz")
    ev.add_argument("--split", default="test", choices=("train", "val", "test"))
    ev.add_argument("--record", action="store_true",
                    help="with --split test: log this read of the test split in the bundle's card (test_reads)")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_eval)

    cv = msub.add_parser("cv", help="patient-wise 5-fold cross-validation of a fold-based recipe")
    cv.add_argument("name", help="recipe name: brain-mri-tumour")
    cv.add_argument("--data", type=Path, required=True, help="figshare_cheng_brain_tumor_jpg.tar")
    cv.add_argument("--out", type=Path, required=True,
                    help="directory for the per-fold bundles (test-fold-K) and cv.json; folds already there are read")
    cv.add_argument("--seed", type=int, default=0)
    cv.add_argument("--folds", default="1,2,3,4,5", help="comma-separated test folds")
    cv.add_argument("--budget-min", type=float, metavar="MIN", help="minutes per fold (as for `models train`)")
    cv.add_argument("--epochs", type=int, help="fixed epochs per fold instead of a budget")
    cv.add_argument("--threads", type=int, help="CPU threads (default: every core this process may use)")
    cv.add_argument("--attach", type=Path, metavar="BUNDLE",
                    help="also record the table in this bundle's model card")
    cv.add_argument("--json", action="store_true")
    cv.set_defaults(func=cmd_cv)
    models.set_defaults(func=lambda args, settings: (models.print_help(), 1)[1])


def _bundle(name: str, settings: Any):
    from agent.wiring import classifier_config
    from tools.classifiers.bundle import Bundle
    from tools.classifiers.registry import get_bundle

    path = Path(name)
    if ("/" in name or name.startswith(".")) and path.is_dir():
        return Bundle.read(path)
    return get_bundle(name, classifier_config(settings))


def cmd_classify(args: argparse.Namespace, settings: Any) -> int:
    from agent.cli import print_json
    from agent.wiring import classifier_config, imaging_config
    from tools.classifiers.inference import classify
    from tools.imaging import load

    study = load(args.path, imaging_config(settings))
    finding = classify(study, model=args.model, config=classifier_config(settings), saliency_png=args.saliency,
                       slice_index=args.slice_index)
    if args.json:
        print_json(finding.to_dict())
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
    if finding.statement:
        print(f"  read as: {finding.statement}")
    if finding.saliency_png:
        print(f"  saliency overlay: {finding.saliency_png}")
    test = (card.get("metrics") or {}).get("test") or {}
    if test:
        print(f"  test metrics: AUC {test.get('auc')}, ACC {test.get('acc')}, ECE {test.get('ece')} "
              f"(n={test.get('n')})")
    print(f"  trained on: {card.get('training_data')}")
    print(f"  data licence: {card.get('data_licence')}")
    print(f"  intended use: {card.get('intended_use')}")
    print(f"  {finding.disclaimer}")
    return 0


def cmd_list(args: argparse.Namespace, settings: Any) -> int:
    from agent.cli import print_json
    from agent.wiring import classifier_config
    from tools.classifiers.registry import list_models

    bundles = list_models(classifier_config(settings))
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
    from agent.wiring import classifier_config
    from tools.classifiers.bundle import Bundle
    from tools.classifiers.train import train

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    out = train(args.name, args.data, args.out, seed=args.seed, epochs=args.epochs, limit=args.limit,
                threads=args.threads, progress=progress, test_fold=args.test_fold,
                cache_dir=classifier_config(settings).cache_dir, budget_min=args.budget_min,
                skip_test=args.skip_test)
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
    import sys

    from agent.cli import print_json
    from agent.wiring import classifier_config
    from tools.classifiers.evaluate import evaluate_bundle, record_test_read
    from tools.errors import InputError

    if args.record and args.split != "test":
        raise InputError("--record logs reads of the test split; add --split test")
    config = classifier_config(settings)
    bundle = _bundle(args.name, settings)
    result = evaluate_bundle(bundle, args.data, args.split, config.device, config.cache_dir)
    if args.record:
        command = f"radconsult models eval {bundle.name} --data {Path(args.data).name} --split test --record"
        result["recorded_in"] = str(record_test_read(bundle, command, result))
    elif args.split == "test":
        print("note: this read of the test split is not logged in the model card; add --record to log it",
              file=sys.stderr)
    if args.json:
        print_json(result)
        return 0
    line = (f"{result['model']} {result['version']} on {result['data']} [{result['split']}]: "
            f"AUC {result['auc']} ACC {result['acc']} ")
    if "per_class_recall" in result:
        line += "recall " + ", ".join(f"{k} {v}" for k, v in result["per_class_recall"].items()) + " "
    else:
        line += f"sensitivity {result['sensitivity']} specificity {result['specificity']} "
    line += f"ECE {result['ece']} Brier {result['brier']} n={result['n']}"
    if "ood_flag_rate" in result:
        line += f", OOD flag rate {result['ood_flag_rate']}"
    print(line)
    return 0


def cmd_cv(args: argparse.Namespace, settings: Any) -> int:
    import sys

    from agent.cli import print_json
    from agent.wiring import classifier_config
    from tools.classifiers.crossval import attach, cross_validate, table
    from tools.errors import InputError

    try:
        folds = [int(f) for f in args.folds.split(",") if f.strip()]
    except ValueError as exc:
        raise InputError(f"--folds must be comma-separated fold numbers, got {args.folds!r}") from exc

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = cross_validate(args.name, args.data, args.out, seed=args.seed, folds=folds,
                            cache_dir=classifier_config(settings).cache_dir, progress=progress,
                            budget_min=args.budget_min, threads=args.threads, epochs=args.epochs)
    if args.attach:
        attach(args.attach, result)
    if args.json:
        print_json(result)
        return 0
    print("\n".join(table(result)))
    return 0
