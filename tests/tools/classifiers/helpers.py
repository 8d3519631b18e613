"""Helpers for the classifier tests: a small real MONAI bundle written by the test, MedMNIST studies."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tests.conftest import shared_file
from tools.classifiers.bundle import instantiate_network, write_bundle
from tools.imaging import ImageStudy, SafeMetadata

TINY_NET: dict[str, Any] = {
    "_target_": "monai.networks.nets.ResNet", "block": "basic", "layers": [1, 1, 1, 1],
    "block_inplanes": [4, 8, 8, 8], "spatial_dims": 2, "n_input_channels": 1, "num_classes": 2,
    "conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True,
}


def tiny_metadata(name: str, labels: list[str] | None = None, channels: int = 1) -> dict[str, Any]:
    labels = labels or ["normal", "abnormal"]
    return {
        "name": name, "version": "0.0.1", "labels": labels, "positive_label": labels[-1],
        "description": "test bundle", "intended_use": "tests only",
        "intended_use_rules": {"modalities": ["CR", "DX"], "body_parts": ["CHEST"],
                               "excluded_views": ["LL", "LAT"], "age_years": [0, 5]},
        "network_data_format": {
            "inputs": {"image": {"num_channels": channels, "spatial_shape": [28, 28]}},
            "outputs": {"pred": {"num_channels": len(labels)}}},
        "preprocessing": {"size": [28, 28], "mean": 0.5, "std": 0.25},
        "calibration": {"temperature": 1.5, "threshold": 0.5},
        "saliency": {"target_layer": "layer3"},
    }


def write_tiny_bundle(root: Path, name: str = "tiny-cxr", net: dict[str, Any] | None = None,
                      metadata: dict[str, Any] | None = None, weights: bool = True) -> Path:
    """A real (random-weight) MONAI ResNet bundle at root/name."""
    net = copy.deepcopy(net or TINY_NET)
    torch.manual_seed(0)
    state = instantiate_network(net).state_dict() if weights else None
    return write_bundle(root / name, metadata or tiny_metadata(name), net, state)


def medmnist(name: str, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    path = shared_file(f"medmnist/{name}.npz")
    with np.load(path) as data:
        return data[f"{split}_images"], data[f"{split}_labels"][:, 0].astype(int)


def study_from(image: np.ndarray, **metadata: Any) -> ImageStudy:
    """An ImageStudy built from a real uint8 image (display = pixels / 255)."""
    display = image.astype(np.float32) / 255.0
    return ImageStudy(pixels=image.astype(np.float32), display=display, spacing=(None, None),
                      source_format="png", metadata=SafeMetadata(**metadata))


def cxr_meta(**extra: Any) -> dict[str, Any]:
    return {"modality": "CR", "body_part": "CHEST", "view_position": "PA", "patient_age_years": 3.0, **extra}


KERMANY = "kermany/kermany_chest_xray_224.tar"
CHENG = "brain_mri/figshare_cheng_brain_tumor_jpg.tar"


def archive_members(archive: Path, names: list[str]) -> dict[str, bytes]:
    """The bytes of the named members of a real archive (read in place)."""
    import tarfile

    wanted, out = set(names), {}
    with tarfile.open(archive) as tf:
        for member in tf:
            if member.name in wanted:
                fh = tf.extractfile(member)
                out[member.name] = fh.read() if fh is not None else b""
    return out


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    import io
    import tarfile

    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def kermany_names(per_folder: int = 6) -> list[str]:
    """Real member names of the Kermany archive: ``per_folder`` from each of train/test x NORMAL/PNEUMONIA,
    several patients each, so that the patient-wise validation split is not empty."""
    import tarfile

    by_folder: dict[str, list[str]] = {}
    with tarfile.open(shared_file(KERMANY)) as tf:
        for name in tf.getnames():
            parts = name.split("/")
            if len(parts) == 4 and parts[3].endswith(".jpeg"):
                by_folder.setdefault("/".join(parts[1:3]), []).append(name)
    from tools.classifiers.archives import kermany_patient, patient_in_val

    out = []
    for folder, names in sorted(by_folder.items()):
        names = sorted(names)
        if folder.startswith("train"):  # half from validation patients, half from training patients
            val = [n for n in names if patient_in_val(kermany_patient(n), 0.12)][: per_folder // 2]
            trn = [n for n in names if not patient_in_val(kermany_patient(n), 0.12)][: per_folder - len(val)]
            out += val + trn
        else:
            out += names[:per_folder]
    return out


def tiny_kermany(tmp: Path, per_folder: int = 6) -> Path:
    """A small archive with the Kermany layout made of real images."""
    names = kermany_names(per_folder)
    return write_tar(tmp / "kermany_tiny.tar", archive_members(shared_file(KERMANY), names))


def tiny_cheng(tmp: Path, per_fold_class: int = 2) -> Path:
    """A small archive with the Cheng layout (metadata.csv + class folders) made of real slices."""
    import csv
    import io

    archive = shared_file(CHENG)
    meta = archive_members(archive, ["figshare_cheng_brain_tumor/metadata.csv"])[
        "figshare_cheng_brain_tumor/metadata.csv"].decode()
    rows = list(csv.DictReader(io.StringIO(meta)))
    picked, seen = [], {}
    for row in rows:
        key = (row["cv_fold"], row["class"])
        if seen.get(key, 0) < per_fold_class:
            seen[key] = seen.get(key, 0) + 1
            picked.append(row)
    files = archive_members(archive, [f"figshare_cheng_brain_tumor/{r['path']}" for r in picked])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(picked)
    files = {"figshare_cheng_brain_tumor/metadata.csv": buf.getvalue().encode(), **files}
    return write_tar(tmp / "cheng_tiny.tar", files)
