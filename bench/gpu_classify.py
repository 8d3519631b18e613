"""GPU throughput of the bundled classifiers and a MONAI DenseNet121 at 224x224 (random weights).

The bundled models include the real-resolution ones (pneumonia-cxr and brain-mri-tumour, both at
224x224), each at its own input size.

Images/s against batch size, float32 vs torch.autocast(float16), through the same runtime path the
classifiers use (``predict_logits``), with CUDA synchronisation around each timed call. Exits with a
clear message when no CUDA device is present.

Usage: python bench/gpu_classify.py [--batches 1,8,32,128,512] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bench(net: torch.nn.Module, shape: tuple[int, ...], batch: int, amp: bool, repeats: int) -> float:
    x = torch.randn(batch, *shape, device="cuda")
    ctx = torch.autocast("cuda", dtype=torch.float16) if amp else torch.autocast("cuda", enabled=False)
    with torch.inference_mode(), ctx:
        for _ in range(3):
            net(x)
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            net(x)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,8,32,128,512")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device available: this benchmark needs a GPU (run bench/classify.py for CPU numbers)")
        return 1
    from monai.networks.nets import DenseNet121

    from tools.classifiers.config import ClassifierConfig
    from tools.classifiers.registry import list_models
    from tools.classifiers.runtime import load_model, predict_logits

    batches = [int(b) for b in args.batches.split(",")]
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}\n")
    nets = []
    for bundle in list_models(ClassifierConfig(device="cuda")):
        loaded = load_model(bundle, "cuda")
        nets.append((bundle.name, loaded.network, (1, *bundle.input_size), bundle))
    dense = DenseNet121(spatial_dims=2, in_channels=1, out_channels=2).cuda().eval()
    nets.append(("DenseNet121@224", dense, (1, 224, 224), None))
    print(f"{'network':<18}{'batch':>7}{'fp32 img/s':>13}{'autocast img/s':>16}{'speed-up':>10}"
          f"{'runtime path img/s':>20}")
    for name, net, shape, bundle in nets:
        for batch in batches:
            if name.startswith("DenseNet") and batch > 256:
                continue
            f32 = bench(net, shape, batch, False, args.repeats)
            f16 = bench(net, shape, batch, True, args.repeats)
            path = ""
            if bundle is not None:
                x = np.random.default_rng(0).normal(size=(batch, *shape)).astype(np.float32)
                predict_logits(net, x, bundle.tta, "cuda", batch, feature_layer=bundle.feature_layer)
                torch.cuda.synchronize()
                t = time.perf_counter()
                for _ in range(5):
                    predict_logits(net, x, bundle.tta, "cuda", batch, feature_layer=bundle.feature_layer)
                torch.cuda.synchronize()
                path = f"{5 * batch / (time.perf_counter() - t):.0f}"
            print(f"{name:<18}{batch:>7}{f32:>13.0f}{f16:>16.0f}{f16 / f32:>9.2f}x{path:>20}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
