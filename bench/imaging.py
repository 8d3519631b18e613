"""Benchmark: tools.imaging.load() against bare ``pydicom.dcmread(path).pixel_array``, same process.

Rows: RG1_UNCI.dcm (1955x1841 MONOCHROME1 CR, uncompressed), RG1_J2KI.dcm (its JPEG 2000 twin) and a
CT series of N copies of CT_small.dcm with shifted positions (a folder, sorted into a volume).
Columns: median wall time of the bare decode (per file for the series), of load(), of load() followed
by reading ``.display`` (what a classifier or the UI needs), and of load() with both ``.pixels`` and
``.display`` materialised; ratios are against the bare decode. Target: load() <= 1.3x bare.

    python -m bench.imaging [--runs 15] [--slices 64]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path


def _interleaved_ms(fns: list[Callable[[], object]], runs: int) -> list[float]:
    """Median wall time of each function, run in turn within every round so that they all see the same
    machine load (the CPUs here are shared)."""
    for fn in fns:
        fn()  # warm-up: imports, page cache
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, bucket in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - t0)
    return [statistics.median(b) * 1000.0 for b in times]


def build_ct_series(folder: Path, slices: int) -> list[Path]:
    import pydicom
    from pydicom.data import get_testdata_file

    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    x, y, z = (float(v) for v in src.ImagePositionPatient)
    paths = []
    for i in range(slices):
        ds = copy.deepcopy(src)
        ds.ImagePositionPatient = [x, y, z + 2.5 * i]
        ds.InstanceNumber = i + 1
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"ct{i:04d}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--slices", type=int, default=64)
    args = parser.parse_args(argv)

    import pydicom
    from pydicom.data import get_testdata_file

    from agent.settings import Settings
    from agent.wiring import imaging_config
    from tools.imaging import load

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        config = imaging_config(Settings(data_dir=Path(tmp) / "data"))
        series_dir = Path(tmp) / "series"
        series_dir.mkdir()
        series = build_ct_series(series_dir, args.slices)
        cases: list[tuple[str, Callable[[], object], Path]] = []
        for name in ("RG1_UNCI.dcm", "RG1_J2KI.dcm"):
            path = Path(get_testdata_file(name))
            cases.append((name, lambda p=path: pydicom.dcmread(p).pixel_array, path))
        cases.append((f"CT series x{args.slices}", lambda: [pydicom.dcmread(p).pixel_array for p in series],
                      series_dir))

        header = (f"{'input':22s} {'bare ms':>9s} {'load ms':>9s} {'ratio':>6s} {'+display':>9s} {'ratio':>6s} "
                  f"{'+pixels':>9s} {'ratio':>6s}")
        print(f"median of {args.runs} interleaved runs, same process")
        print(header)
        print("-" * len(header))
        for label, bare, path in cases:
            t_bare, t_load, t_disp, t_full = _interleaved_ms([
                bare,
                lambda p=path: load(p, config),
                lambda p=path: load(p, config).display,
                lambda p=path: (lambda s: (s.display, s.pixels))(load(p, config)),
            ], args.runs)
            print(f"{label:22s} {t_bare:9.2f} {t_load:9.2f} {t_load / t_bare:6.2f} {t_disp:9.2f} "
                  f"{t_disp / t_bare:6.2f} {t_full:9.2f} {t_full / t_bare:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
