"""CPU benchmark of the bundled classifiers.

1. Throughput (images/s, best of N interleaved runs) at batch 1 and 64 through our path (``LoadedModel.predict``: TTA, feature
   capture for OOD, inference_mode) against a bare ``network(x)`` forward pass of the same network in the
   same run; the ratio is our overhead (TTA alone doubles the work: both are shown).
2. p50 end-to-end latency for pydicom-data's RG1_UNCI.dcm (1955x1841 chest CR): load + preprocess +
   classify, and the same with Grad-CAM saliency.

Usage: python bench/classify.py [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.settings import Settings  # noqa: E402
from agent.wiring import imaging_config  # noqa: E402
from tools.classifiers.registry import list_models  # noqa: E402
from tools.classifiers.runtime import load_model  # noqa: E402


def timeit(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def interleaved(fns, repeats: int) -> list[list[float]]:
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
    print(f"{'model':<16}{'batch':>6}{'bare fwd img/s':>16}{'bare x TTA img/s':>18}{'ours img/s':>12}"
          f"{'overhead vs bare':>18}{'vs bare x TTA':>15}")
    for bundle in list_models(Settings()):
        loaded = load_model(bundle, "cpu")
        net = loaded.network
        views = 1 + ("hflip" in bundle.tta)
        for batch in (1, 64):
            x = np.random.default_rng(0).normal(size=(batch, 1, *bundle.input_size)).astype(np.float32)
            xt = torch.from_numpy(x)

            def bare(xt=xt, net=net):
                with torch.inference_mode():
                    net(xt)

            def bare_tta(xt=xt, net=net, views=views):
                with torch.inference_mode():
                    net(xt)
                    if views > 1:
                        net(torch.flip(xt, dims=[-1]))

            def ours(x=x, loaded=loaded):
                loaded.predict(x)

            n = max(5, repeats // 4) if batch > 1 else repeats
            tb, tt, to = (min(t) for t in interleaved((bare, bare_tta, ours), n))
            print(f"{bundle.name:<16}{batch:>6}{batch / tb:>16.0f}{batch / tt:>18.0f}{batch / to:>12.0f}"
                  f"{to / tb:>17.2f}x{to / tt:>14.2f}x")


def end_to_end(repeats: int) -> None:
    from pydicom.data import get_testdata_file

    from tools.classifiers.inference import classify
    from tools.imaging import load

    path = get_testdata_file("RG1_UNCI.dcm", download=False)
    if path is None:
        print("RG1_UNCI.dcm not installed (pip install pydicom-data): end-to-end latency skipped")
        return
    settings = Settings()
    config = imaging_config(settings)
    rows = []
    t_load = timeit(lambda: load(path, config), repeats)
    study = load(path, config)
    t_cls = timeit(lambda: classify(study, settings=settings), repeats)
    t_sal = timeit(lambda: classify(study, settings=settings, saliency=True), repeats)
    t_all = timeit(lambda: classify(load(path, config), settings=settings, saliency=True), repeats)
    rows = [("load (read + de-identify + display)", t_load), ("preprocess + classify", t_cls),
            ("preprocess + classify + Grad-CAM", t_sal), ("end to end: load + classify + Grad-CAM", t_all)]
    print(f"\nRG1_UNCI.dcm ({study.shape[0]}x{study.shape[1]}), {repeats} runs")
    print(f"{'stage':<42}{'p50 ms':>10}{'min ms':>10}")
    for name, t in rows:
        print(f"{name:<42}{statistics.median(t) * 1e3:>10.1f}{min(t) * 1e3:>10.1f}")


def ood_report() -> None:
    """How often the OOD flag fires: the test split (from the card) and images from other sources."""
    from pydicom.data import get_testdata_file

    from tools.classifiers.evaluate import ood_scores
    from tools.imaging import load

    root = Path(__file__).resolve().parents[1]
    shared = Path(os.environ.get("RADCONSULT_SHARED", root.parent / "shared")) / "data" / "cxr"
    files = [Path(p) for p in (get_testdata_file(n, download=False) for n in
                               ("CT_small.dcm", "MR_small.dcm", "RG1_UNCI.dcm", "US1_UNCR.dcm")) if p]
    files += sorted(shared.glob("*")) if shared.is_dir() else []
    settings = Settings()
    studies = []
    for f in files:
        try:
            study = load(f, imaging_config(settings))
        except Exception as exc:  # a file another area cannot load yet: say so, keep going
            print(f"  (skipped {f.name}: {exc})")
            continue
        disp = study.display[study.display.shape[0] // 2] if study.is_volume else study.display
        studies.append((f.name, disp))
    print("\nOOD flag (Mahalanobis, threshold = val 99th percentile)")
    print(f"{'model':<16}{'test split flag rate':>22}  other-source images: score / threshold")
    for bundle in list_models(settings):
        rate = bundle.metadata.get("metrics", {}).get("test", {}).get("ood_flag_rate")
        scores = ood_scores(bundle, [d for _, d in studies], "cpu") if studies else []
        detail = ", ".join(f"{n} {s:.0f}{'*' if s > bundle.ood.threshold else ''}"
                           for (n, _), s in zip(studies, scores, strict=True))
        fired = sum(s > bundle.ood.threshold for s in scores)
        print(f"{bundle.name:<16}{rate!s:>22}  {fired}/{len(studies)} flagged (threshold "
              f"{bundle.ood.threshold:.0f}; * = flagged): {detail}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}\n")
    throughput(args.repeats)
    end_to_end(max(3, args.repeats // 4))
    ood_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
