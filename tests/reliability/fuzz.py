"""The loader fuzz campaign: real sample files, mutated, each run through ``tools.imaging`` in a child.

Seeds (real files, nothing synthetic but the containers): pydicom's and pydicom-data's samples by exact
name (CT, MR, CR, US, JPEG, JPEG 2000, JPEG-LS, RLE, deflated, big endian, multi-frame, palette, RGB,
RT dose, modality and VOI lookup tables, overlays), the
SIIM chest CR from ``../shared/data/cxr``, the NIH chest PNGs (and a JPEG encoded from one), NIfTI-1/2
volumes made with nibabel from a real CT series, and that series zipped. Each input is one seed, of
each kind in turn, with one to three mutations; it is loaded the way the UI does (a path or bytes, a
zip extracted first), then ``.pixels``, ``.display`` and ``summary()`` are read.

An input is reproduced from ``(seed, index)`` alone: :func:`make_input`.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import shutil
import tempfile
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability.harness import OUTCOMES, ChildLimits, Outcome, run_all
from tests.reliability.mutators import mutate

KINDS = ("dicom", "png", "jpeg", "nifti", "zip")
SUFFIX = {"dicom": ".dcm", "png": ".png", "jpeg": ".jpg", "nifti": ".nii", "zip": ".zip"}
DICOM_SAMPLES = ("CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "JPEG2000.dcm",
                 "MR2_J2KI.dcm", "JPGExtended.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm", "emri_small.dcm",
                 "examples_palette.dcm", "rtdose.dcm", "SC_ybr_full_422_uncompressed.dcm", "JPEG-LL.dcm",
                 "RG1_UNCI.dcm", "mlut_18.dcm", "vlut_04.dcm", "US1_UNCR.dcm", "emri_small_RLE.dcm",
                 "MR-SIEMENS-DICOM-WithOverlays.dcm")
SERIES = ("77654033", "CT2")  # a real 4-slice CT series under pydicom's dicomdirtests


@dataclass(frozen=True)
class Seed:
    name: str
    kind: str
    data: bytes


def _pydicom_sample(name: str) -> Path | None:
    from pydicom.data import get_testdata_file

    try:
        path = get_testdata_file(name, download=False)  # exact names only: a search would go online
    except Exception:
        return None
    return Path(path) if path else None


def load_seeds(shared_data: Path | None) -> list[Seed]:
    """The real sample files available here, by kind (missing ones are left out, never downloaded)."""
    import numpy as np
    import pydicom
    from PIL import Image

    seeds = [Seed(n, "dicom", p.read_bytes()) for n in DICOM_SAMPLES if (p := _pydicom_sample(n))]
    cxr = shared_data / "cxr" if shared_data else None
    if cxr and (cxr / "siim_cxr_no_pneumothorax.dcm").is_file():
        seeds.append(Seed("siim_cxr_no_pneumothorax.dcm", "dicom", (cxr / "siim_cxr_no_pneumothorax.dcm").read_bytes()))
    pngs = sorted(cxr.glob("nih_*.png")) if cxr and cxr.is_dir() else []
    seeds += [Seed(p.name, "png", p.read_bytes()) for p in pngs]
    series_dir = _pydicom_sample("DICOMDIR")
    slices = sorted(series_dir.parent.joinpath(*SERIES).iterdir()) if series_dir else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        volume = np.stack([pydicom.dcmread(p).pixel_array for p in slices]) if slices else None
    if pngs:
        buf = io.BytesIO()
        Image.open(pngs[0]).convert("L").save(buf, format="JPEG", quality=90)
        seeds.append(Seed(pngs[0].stem + ".jpg", "jpeg", buf.getvalue()))
    rgb = _pydicom_sample("SC_rgb.dcm") or _pydicom_sample("SC_rgb_small_odd.dcm")
    if rgb:
        buf = io.BytesIO()
        Image.fromarray(pydicom.dcmread(rgb).pixel_array).save(buf, format="JPEG", quality=95)
        seeds.append(Seed(rgb.stem + ".jpg", "jpeg", buf.getvalue()))
        buf = io.BytesIO()
        Image.fromarray(pydicom.dcmread(rgb).pixel_array).save(buf, format="PNG")
        seeds.append(Seed(rgb.stem + ".png", "png", buf.getvalue()))
    if volume is not None:
        seeds += _nifti_seeds(volume)
        seeds.append(Seed("CT2-series.zip", "zip", _zipped(slices, zipfile.ZIP_DEFLATED)))
        seeds.append(Seed("CT2-series-stored.zip", "zip", _zipped(slices, zipfile.ZIP_STORED)))
    return seeds


def _nifti_seeds(volume) -> list[Seed]:
    """The CT series as NIfTI-1 (int16 with scaling, plain and gzip) and NIfTI-2 (float32), made with nibabel."""
    import nibabel as nib
    import numpy as np

    data = np.ascontiguousarray(volume.transpose(2, 1, 0)).astype(np.int16)
    affine = np.diag([-0.66, -0.66, 5.0, 1.0])
    one = nib.Nifti1Image(data, affine)
    one.header.set_slope_inter(1.0, -1024.0)
    two = nib.Nifti2Image(data.astype(np.float32), affine)
    plain = one.to_bytes()
    return [Seed("CT2.nii", "nifti", plain), Seed("CT2.nii.gz", "nifti", gzip.compress(plain, mtime=0)),
            Seed("CT2-nifti2.nii", "nifti", two.to_bytes())]


def _zipped(files: list[Path], method: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as archive:
        for p in files:
            archive.writestr(f"study/series/{p.name}", p.read_bytes())
    return buf.getvalue()


@dataclass(frozen=True)
class FuzzInput:
    index: int
    kind: str
    seed: str
    mutation: str
    data: bytes
    as_bytes: bool  # loaded from bytes (an upload) rather than from a path


def make_input(seeds: list[Seed], base_seed: int, index: int) -> FuzzInput:
    """Input ``index`` of a campaign: the kinds in turn, a seed of that kind, its mutation."""
    rng = random.Random(f"{base_seed}:{index}")
    kinds = [k for k in KINDS if any(s.kind == k for s in seeds)]
    kind = kinds[index % len(kinds)]
    same = [s for s in seeds if s.kind == kind]
    seed, other = rng.choice(same), rng.choice(same)
    data, mutation = mutate(kind, seed.data, rng, other.data)
    return FuzzInput(index, kind, seed.name, mutation, data, as_bytes=kind != "zip" and rng.random() < 0.3)


def load_like_the_ui(item: FuzzInput, workdir: Path, config) -> None:
    """What an upload goes through: a zip is extracted, the file or folder loaded, the arrays read."""
    from tools.imaging import load
    from tools.imaging.archive import extract_zip

    workdir.mkdir(parents=True, exist_ok=True)
    if item.as_bytes:
        study = load(item.data, config)
    elif item.kind == "zip":
        (workdir / "upload.zip").write_bytes(item.data)
        (workdir / "series").mkdir()
        extract_zip(workdir / "upload.zip", workdir / "series", max_bytes=config.limits.max_file_bytes)
        files = list((workdir / "series").iterdir())
        study = load(files[0] if len(files) == 1 else workdir / "series", config)
    else:
        path = workdir / f"input{SUFFIX[item.kind]}"
        path.write_bytes(item.data)
        study = load(path, config)
    _ = study.pixels, study.display
    json.dumps(study.summary())


@dataclass
class FuzzReport:
    inputs: int = 0
    by_kind: dict[str, Counter] = field(default_factory=dict)
    failures: list[tuple[FuzzInput, Outcome]] = field(default_factory=list)
    typed_errors: Counter = field(default_factory=Counter)
    peak_bytes: int = 0
    seconds: float = 0.0

    def add(self, item: FuzzInput, outcome: Outcome) -> None:
        self.inputs += 1
        self.by_kind.setdefault(item.kind, Counter())[outcome.outcome] += 1
        self.peak_bytes = max(self.peak_bytes, outcome.peak_bytes)
        if outcome.outcome == "typed":
            self.typed_errors[outcome.error] += 1
        elif outcome.outcome != "loaded":
            self.failures.append((item, outcome))

    @property
    def totals(self) -> Counter:
        total: Counter = Counter()
        for counts in self.by_kind.values():
            total.update(counts)
        return total

    def table(self) -> list[str]:
        """The markdown table: one row per kind, then the total."""
        lines = ["| input kind | inputs | loaded | typed error | untyped error | hang | memory over budget |",
                 "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for kind in [*[k for k in KINDS if k in self.by_kind], "all"]:
            c = self.totals if kind == "all" else self.by_kind[kind]
            name = "**all**" if kind == "all" else kind
            lines.append(f"| {name} | {sum(c.values())} | " + " | ".join(str(c[o]) for o in OUTCOMES) + " |")
        return lines

    def describe_failures(self, limit: int = 20) -> str:
        classes = Counter((o.outcome, o.error) for _, o in self.failures)
        lines = [f"{n} x {outcome}: {error}" for (outcome, error), n in classes.most_common()]
        for item, o in self.failures[:limit]:
            lines.append(f"  input {item.index} ({item.kind}, {item.seed}, {item.mutation}): {o.error}: {o.message}")
        return "\n".join(lines)


def run_campaign(inputs: int, seed: int, *, jobs: int = 1, limits: ChildLimits | None = None,
                 shared_data: Path | None = None, save_dir: Path | None = None,
                 progress: Callable[[int, FuzzReport], None] | None = None) -> FuzzReport:
    """Fuzz the loader with ``inputs`` mutated inputs; every failure is kept (and written to ``save_dir``)."""
    import time

    from tools.deid import DeidPolicy, installation_secret
    from tools.imaging import ImagingConfig, ImagingLimits

    limits = limits or ChildLimits()
    seeds = load_seeds(shared_data)
    report = FuzzReport()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="radconsult-fuzz-") as tmp:
        root = Path(tmp)
        policy = DeidPolicy(secret_path=root / "secret.key")
        installation_secret(policy)  # created once, before the children start
        config = ImagingConfig(deid=policy, limits=ImagingLimits(max_decode_bytes=limits.budget_bytes))
        items: dict[int, FuzzInput] = {}

        def targets() -> Iterator[Callable[[], None]]:
            for index in range(inputs):
                item = items[index] = make_input(seeds, seed, index)
                yield lambda item=item: load_like_the_ui(item, root / str(item.index), config)

        for index, outcome in run_all(targets(), limits, _typed_error(), jobs=jobs):
            item = items.pop(index)
            shutil.rmtree(root / str(index), ignore_errors=True)
            report.add(item, outcome)
            if outcome.outcome not in ("loaded", "typed") and save_dir is not None:
                save_dir.mkdir(parents=True, exist_ok=True)
                (save_dir / f"{seed}-{index}-{item.kind}{SUFFIX[item.kind]}").write_bytes(item.data)
            if progress is not None:
                progress(index, report)
    report.seconds = time.perf_counter() - started
    return report


def _typed_error() -> type[BaseException]:
    from tools.errors import RadconsultError

    return RadconsultError
