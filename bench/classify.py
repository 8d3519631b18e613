"""CPU benchmark of the bundled classifiers, and how often their OOD flag fires.

1. Throughput (images/s, best of N interleaved runs) at batch 1 and 32 through our path
   (``LoadedModel.predict``: TTA, feature capture for OOD, inference_mode) against a bare ``network(x)``
   forward pass of the same network in the same run; the ratio is our overhead (the bundle's test-time
   views alone multiply the work: "bare x TTA" runs the bare network on the same views).
2. p50 end-to-end latency on a real DICOM per model: load (read, de-identify, display) + preprocess +
   classify + Grad-CAM. pneumonia-cxr: pydicom-data's RG1_UNCI.dcm (1955x1841 MONOCHROME1 chest CR);
   brain-mri-tumour: a held-out slice of the Cheng archive (fold 5) written as a 512x512 16-bit MR DICOM
   of the head; breast-us: pydicom's US1_UNCR.dcm with the model named.
3. OOD flag rate (threshold = val 99th percentile) on each model's test split (recomputed) and on images
   from other sources: the other real-resolution model's test images, the adult films of ../shared/data/cxr
   and RG1_UNCI.dcm, pydicom's CT and MR samples. ``--write-cards`` records this table in the model cards.

Usage: python bench/classify.py [--repeats N] [--threads N] [--ood-sample N] [--write-cards] [--skip-ood]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.classifiers.config import ClassifierConfig  # noqa: E402
from tools.classifiers.registry import get_bundle, list_models  # noqa: E402
from tools.classifiers.runtime import load_model, tta_views  # noqa: E402

CPU = ClassifierConfig(device="cpu")
SHARED = Path(os.environ.get("RADCONSULT_SHARED", ROOT.parent / "shared")) / "data"
KERMANY = SHARED / "kermany" / "kermany_chest_xray_224.tar"
CHENG = SHARED / "brain_mri" / "figshare_cheng_brain_tumor_jpg.tar"


def timeit(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def interleaved(fns: list[Callable[[], object]], repeats: int) -> list[list[float]]:
    """Time several functions round-robin, so load from other processes hits them alike."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t)
    return times


def throughput(repeats: int) -> None:
    """Images/s from the best of ``repeats`` interleaved runs (robust on a shared CPU)."""
    print(f"{'model':<18}{'input':>9}{'batch':>6}{'bare fwd img/s':>16}{'bare x TTA img/s':>18}{'ours img/s':>12}"
          f"{'ours / bare':>13}{'ours / bare x TTA':>19}")
    for bundle in list_models(CPU):
        loaded = load_model(bundle, "cpu")
        net = loaded.network
        for batch in (1, 32):
            x = np.random.default_rng(0).normal(size=(batch, 1, *bundle.input_size)).astype(np.float32)
            xt = torch.from_numpy(x)

            def bare(xt=xt, net=net):
                with torch.inference_mode():
                    net(xt)

            def bare_tta(xt=xt, net=net, tta=tuple(bundle.tta)):
                with torch.inference_mode():
                    for view in tta_views(xt, list(tta)):  # the bundle's own test-time views
                        net(view)

            def ours(x=x, loaded=loaded):
                loaded.predict(x)

            n = max(3, repeats // 4) if batch > 1 else repeats
            tb, tt, to = (min(t) for t in interleaved([bare, bare_tta, ours], n))
            size = "x".join(str(s) for s in bundle.input_size)
            print(f"{bundle.name:<18}{size:>9}{batch:>6}{batch / tb:>16.1f}{batch / tt:>18.1f}{batch / to:>12.1f}"
                  f"{tb / to:>12.2f}x{tt / to:>18.2f}x")


def mr_head_dicom(folder: Path) -> Path | None:
    """A held-out Cheng slice (fold 5) as a 16-bit MR DICOM of the head; None when the archive is absent."""
    if not CHENG.is_file():
        return None
    from PIL import Image
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    with tarfile.open(CHENG) as tf:
        rows = tf.extractfile("figshare_cheng_brain_tumor/metadata.csv").read().decode().splitlines()
        first = next(r.split(",")[0] for r in rows[1:] if r.split(",")[4] == "5")
        v = np.asarray(Image.open(io.BytesIO(tf.extractfile(f"figshare_cheng_brain_tumor/{first}").read())).convert("L"))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = folder / "mr_head.dcm"
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.BodyPartExamined, ds.SeriesDescription = "MR", "HEAD", "T1 AX POST GD"
    ds.PatientID, ds.PatientName, ds.PatientAge = "BENCH-1", "Bench^Mr", "045Y"
    ds.Rows, ds.Columns = v.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 1020, 2040
    ds.PixelData = (v.astype(np.uint16) * 8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def end_to_end(repeats: int) -> None:
    from pydicom.data import get_testdata_file

    from agent.settings import Settings
    from agent.wiring import imaging_config
    from tools.classifiers.inference import classify
    from tools.imaging import load

    imaging = imaging_config(Settings())
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("pneumonia-cxr", get_testdata_file("RG1_UNCI.dcm", download=False), None),
                 ("brain-mri-tumour", mr_head_dicom(Path(tmp)), None),
                 ("breast-us", get_testdata_file("US1_UNCR.dcm", download=False), "breast-us")]
        print(f"\n{'model':<18}{'file':<16}{'size':>11}{'load':>9}{'classify':>10}{'+Grad-CAM':>11}"
              f"{'end to end':>12}  (p50 ms, {repeats} runs)")
        for name, path, named in cases:
            if path is None:
                print(f"{name:<18}(input file not installed: skipped)")
                continue
            study = load(path, imaging)
            t_load = timeit(lambda p=path: load(p, imaging), repeats)
            t_cls = timeit(lambda s=study, m=named: classify(s, model=m, config=CPU), repeats)
            t_sal = timeit(lambda s=study, m=named: classify(s, model=m, config=CPU, saliency=True), repeats)
            t_all = timeit(lambda p=path, m=named: classify(load(p, imaging), model=m, config=CPU, saliency=True),
                           repeats)
            f = classify(study, model=named, config=CPU)
            size = "x".join(str(s) for s in study.shape[:2])
            print(f"{f.model:<18}{Path(path).name:<16}{size:>11}" + "".join(
                f"{statistics.median(t) * 1e3:>{w}.1f}" for t, w in ((t_load, 9), (t_cls, 10), (t_sal, 11),
                                                                      (t_all, 12)))
                  + ("  (abstained)" if f.abstain else ""))


def _archive_displays(archive: Path, wanted: Callable[[str], bool], limit: int) -> list[np.ndarray]:
    from tools.classifiers.archives import decode_display

    out: list[np.ndarray] = []
    with tarfile.open(archive) as tf:
        names = sorted(n for n in tf.getnames() if wanted(n))
        step = max(1, len(names) // limit)
        for name in names[::step][:limit]:
            out.append(decode_display(name, tf.extractfile(name).read()))
    return out


def _cheng_test(name: str, _cache: dict[str, set[str]] = {}) -> bool:  # noqa: B006 - per-process memo
    if "folds" not in _cache:
        with tarfile.open(CHENG) as tf:
            rows = tf.extractfile("figshare_cheng_brain_tumor/metadata.csv").read().decode().splitlines()
        _cache["folds"] = {f"figshare_cheng_brain_tumor/{r.split(',')[0]}" for r in rows[1:] if r.split(",")[4] == "5"}
    return name in _cache["folds"]


def other_sources(sample: int) -> dict[str, list[np.ndarray]]:
    """Display images by source, read the way the loader reads clinicians' files."""
    from pydicom.data import get_testdata_file

    from agent.settings import Settings
    from agent.wiring import imaging_config
    from tools.imaging import load

    imaging = imaging_config(Settings())
    sources: dict[str, list[np.ndarray]] = {}
    if KERMANY.is_file():
        sources["Kermany test CXR (paediatric)"] = _archive_displays(
            KERMANY, lambda n: "/test/" in n and n.endswith(".jpeg"), sample)
    if CHENG.is_file():
        sources["Cheng fold-5 MR slices"] = _archive_displays(CHENG, _cheng_test, sample)
    adult = [p for p in sorted((SHARED / "cxr").glob("*")) if p.suffix in (".png", ".dcm")]
    rg1 = get_testdata_file("RG1_UNCI.dcm", download=False)
    adult += [Path(rg1)] if rg1 else []
    sources["adult chest films (NIH/SIIM, RG1_UNCI)"] = [load(p, imaging).display for p in adult]
    samples = []
    for n in ("CT_small.dcm", "MR_small.dcm"):
        p = get_testdata_file(n, download=False)
        if p:
            samples.append(load(p, imaging).display)
    sources["pydicom CT_small and MR_small"] = samples
    return sources


def ood_report(sample: int, write_cards: bool) -> None:
    from tools.classifiers import card
    from tools.classifiers.bundle import METADATA
    from tools.classifiers.evaluate import evaluate_bundle, ood_scores

    sources = other_sources(sample)
    own = {"pneumonia-cxr": "Kermany test CXR (paediatric)", "brain-mri-tumour": "Cheng fold-5 MR slices"}
    data = {"pneumonia-cxr": KERMANY, "brain-mri-tumour": CHENG,
            "breast-us": SHARED / "medmnist" / "breastmnist.npz"}
    print("\nOOD flag rate (Mahalanobis on the penultimate features; threshold = val 99th percentile)")
    print(f"{'model':<18}{'images':<42}{'n':>5}{'flagged':>9}{'rate':>8}")
    for bundle in list_models(CPU):
        rows = []
        if data[bundle.name].is_file():
            r = evaluate_bundle(bundle, data[bundle.name], "test", "cpu")
            rows.append({"source": f"own test split ({data[bundle.name].name})", "n": r["n"],
                         "flagged": round(r["ood_flag_rate"] * r["n"]), "rate": r["ood_flag_rate"]})
        for source, displays in sources.items():
            if source == own.get(bundle.name) or not displays:
                continue
            scores = ood_scores(bundle, displays, "cpu")
            flagged = int((scores > bundle.ood.threshold).sum())
            rows.append({"source": source, "n": len(displays), "flagged": flagged,
                         "rate": round(flagged / len(displays), 4)})
        for r in rows:
            print(f"{bundle.name:<18}{r['source']:<42}{r['n']:>5}{r['flagged']:>9}{r['rate']:>8.3f}")
        if write_cards and bundle.preprocess_spec.size[0] >= 224:
            metadata = dict(get_bundle(bundle.name).metadata)
            metadata["ood_report"] = {
                "sources": rows, "command": f"python bench/classify.py --ood-sample {sample} --write-cards",
                "note": f"flag = score above the val 99th percentile; other sources shown to the model without "
                        f"the intended-use checks; up to {sample} images per archive source"}
            (bundle.path / METADATA).write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
            card.write(bundle.path, metadata)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ood-sample", type=int, default=200, help="images per archive source for the OOD table")
    ap.add_argument("--write-cards", action="store_true", help="record the OOD table in the model cards")
    ap.add_argument("--skip-ood", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}\n")
    throughput(args.repeats)
    end_to_end(max(3, args.repeats // 4))
    if not args.skip_ood:
        ood_report(args.ood_sample, args.write_cards)
    return 0


if __name__ == "__main__":
    sys.exit(main())
