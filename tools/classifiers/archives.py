"""The real-resolution training archives, read in place: layout checks, patient-wise splits, a decode cache.

Two layouts (see ../shared/README.md):

``kermany-cxr``
    ``chest_xray_224/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg`` (Kermany et al. 2018 at 224x224). The test
    folder is the test split. Validation is carved out of the train folder **by patient**: the child's key
    is the ``personNNN`` prefix of a pneumonia file and the ``IM-NNNN`` / ``NORMAL2-IM-NNNN`` prefix of a
    normal one; a patient goes to validation when the first 8 hex digits of sha256(key) modulo 1000 fall
    below ``1000 * val_fraction``. The rule uses no seed, so every command sees the same split.
``cheng-brain-mri``
    ``figshare_cheng_brain_tumor/metadata.csv`` (path, class, cv_fold) and the class folders (Cheng 2017).
    Splits follow the author's patient-grouped ``cv_fold`` only: ``test_fold`` is the test split,
    ``val_fold`` the validation split, the other three folds train.

Images are decoded once (Pillow), passed through the bundle's own preprocessing up to the intensity
step (:func:`tools.classifiers.preprocess.scaled`, the function inference uses) and cached as float32
under ``cache_dir``, keyed by the archive's sha256 and the preprocessing. A missing, truncated or
wrongly laid out archive raises :class:`~tools.errors.DataArchiveError` naming what is wrong.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.classifiers.preprocess import Preprocessing, scaled
from tools.errors import DataArchiveError, InputError

log = logging.getLogger(__name__)

KINDS = ("kermany-cxr", "cheng-brain-mri")
SPLITS = ("train", "val", "test")
KERMANY_ROOT = "chest_xray_224"
KERMANY_CLASSES = {"NORMAL": "normal", "PNEUMONIA": "pneumonia"}
CHENG_ROOT = "figshare_cheng_brain_tumor"
_KERMANY_PATIENT = (re.compile(r"^(person\d+)_"), re.compile(r"^((?:NORMAL2-)?IM-\d+)-"))


@dataclass(frozen=True)
class SplitRule:
    """How an archive's images are assigned to train / val / test; recorded in the model card."""

    kind: str
    val_fraction: float = 0.12  # kermany-cxr: share of training patients held out for validation
    test_fold: int = 5          # cheng-brain-mri
    val_fold: int = 4           # cheng-brain-mri

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown archive kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.kind == "cheng-brain-mri":
            if not (1 <= self.test_fold <= 5 and 1 <= self.val_fold <= 5) or self.test_fold == self.val_fold:
                raise InputError(f"test fold {self.test_fold} and validation fold {self.val_fold} must be two "
                                 "different folds in 1-5")
        elif not 0.0 < self.val_fraction < 0.5:
            raise InputError("val_fraction must lie in (0, 0.5)")

    def describe(self) -> str:
        if self.kind == "kermany-cxr":
            return (f"test = the archive's test folder; val = the training patients whose "
                    f"int(sha256(patient key)[:8], 16) % 1000 < {round(self.val_fraction * 1000)} "
                    "(patient key: personNNN, IM-NNNN or NORMAL2-IM-NNNN); train = the other training patients")
        train = [f for f in range(1, 6) if f not in (self.test_fold, self.val_fold)]
        return (f"patient-grouped cv_fold of metadata.csv: train folds {train}, val fold {self.val_fold}, "
                f"test fold {self.test_fold}")

    def as_json(self) -> dict[str, object]:
        if self.kind == "kermany-cxr":
            return {"kind": self.kind, "val_fraction": self.val_fraction, "rule": self.describe()}
        return {"kind": self.kind, "test_fold": self.test_fold, "val_fold": self.val_fold, "rule": self.describe()}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> SplitRule:
        return cls(kind=str(data["kind"]), val_fraction=float(data.get("val_fraction", 0.12)),  # type: ignore[arg-type]
                   test_fold=int(data.get("test_fold", 5)), val_fold=int(data.get("val_fold", 4)))  # type: ignore[call-overload]


@dataclass(frozen=True)
class Entry:
    """One image of an archive: its member path, label index, patient or fold group and split."""

    member: str
    label: int
    group: str
    split: str


@dataclass(frozen=True)
class SplitData:
    """The scaled images of one split: (N, H, W) float32 in [0, 1], labels (N,), groups and members."""

    images: np.ndarray
    labels: np.ndarray
    groups: tuple[str, ...]
    members: tuple[str, ...]


# --- reading the archive ----------------------------------------------------------------------------
def _open(path: Path) -> tarfile.TarFile:
    path = Path(path)
    if not path.exists():
        raise DataArchiveError(f"data archive {path} not found")
    if not path.is_file():
        raise DataArchiveError(f"data archive {path} is not a file")
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataArchiveError(f"{path.name} is not a readable tar archive ({exc})") from exc


def _member_names(path: Path) -> list[str]:
    with _open(path) as tf:
        try:
            return [m.name for m in tf.getmembers() if m.isfile()]
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataArchiveError(f"{Path(path).name} is truncated or corrupt: {exc}") from exc


def iter_members(path: Path, wanted: set[str]) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of the wanted members, in archive order; DataArchiveError when cut short."""
    name = Path(path).name
    found = 0
    with _open(path) as tf:
        try:
            for member in tf:
                if member.name not in wanted or not member.isfile():
                    continue
                fh = tf.extractfile(member)
                data = fh.read() if fh is not None else b""
                if len(data) != member.size:
                    raise DataArchiveError(f"{name} is truncated: {member.name} has {len(data)} of "
                                           f"{member.size} bytes")
                found += 1
                yield member.name, data
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataArchiveError(f"{name} is truncated or corrupt (after {found} images): {exc}") from exc
    if found != len(wanted):
        raise DataArchiveError(f"{name} is truncated: {len(wanted) - found} of its listed images could not "
                               "be read")


def archive_sha256(path: Path) -> str:
    """Hex sha256 of the archive file (recorded in the model card; keys the decode cache)."""
    path = Path(path)
    if not path.is_file():
        raise DataArchiveError(f"data archive {path} not found")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def kermany_patient(filename: str) -> str:
    """The child's key in a Kermany file name; DataArchiveError for a name that carries none."""
    base = filename.rsplit("/", 1)[-1]
    for pattern in _KERMANY_PATIENT:
        m = pattern.match(base)
        if m:
            return m.group(1)
    raise DataArchiveError(f"cannot tell the patient of {filename!r}: expected personNNN_..., IM-NNNN-... or "
                           "NORMAL2-IM-NNNN-... as in the Kermany archive")


def patient_in_val(key: str, val_fraction: float) -> bool:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 1000 < round(val_fraction * 1000)


def _index_kermany(path: Path, names: list[str], rule: SplitRule, labels: tuple[str, ...]) -> list[Entry]:
    expected = f"{KERMANY_ROOT}/{{train,test}}/{{NORMAL,PNEUMONIA}}/*.jpeg"
    entries: list[Entry] = []
    counts: dict[tuple[str, str], int] = {}
    for name in names:
        parts = name.split("/")
        if len(parts) != 4 or parts[0] != KERMANY_ROOT or not parts[3].lower().endswith((".jpeg", ".jpg")):
            continue
        folder, cls = parts[1], parts[2]
        if folder not in ("train", "test") or cls not in KERMANY_CLASSES:
            continue
        label = KERMANY_CLASSES[cls]
        if label not in labels:
            raise DataArchiveError(f"{path.name}: class {label!r} is not a label of this model ({labels})")
        patient = kermany_patient(name)
        split = "test" if folder == "test" else ("val" if patient_in_val(patient, rule.val_fraction) else "train")
        entries.append(Entry(name, labels.index(label), patient, split))
        counts[(folder, cls)] = counts.get((folder, cls), 0) + 1
    missing = [f"{KERMANY_ROOT}/{f}/{c}/" for f in ("train", "test") for c in KERMANY_CLASSES
               if not counts.get((f, c))]
    if missing:
        raise DataArchiveError(f"{path.name} does not have the Kermany layout: no images in "
                               f"{', '.join(missing)} (expected {expected})")
    return entries


def _index_cheng(path: Path, names: list[str], rule: SplitRule, labels: tuple[str, ...]) -> list[Entry]:
    meta_name = f"{CHENG_ROOT}/metadata.csv"
    if meta_name not in names:
        raise DataArchiveError(f"{path.name} does not have the Cheng layout: no {meta_name} (expected "
                               f"{CHENG_ROOT}/metadata.csv and {CHENG_ROOT}/<class>/<index>.jpg)")
    text = b"".join(data for _, data in iter_members(path, {meta_name})).decode("utf-8", "replace")
    reader = csv.DictReader(io.StringIO(text))
    need = {"path", "class", "cv_fold"}
    if not need <= set(reader.fieldnames or ()):
        raise DataArchiveError(f"{path.name}: {meta_name} lacks the columns {sorted(need - set(reader.fieldnames or ()))}")
    present = set(names)
    entries: list[Entry] = []
    folds_seen: set[int] = set()
    for row in reader:
        member = f"{CHENG_ROOT}/{row['path']}"
        cls = row["class"].strip().lower()
        if cls not in labels:
            raise DataArchiveError(f"{path.name}: {row['path']} has class {cls!r}, not one of {labels}")
        try:
            fold = int(row["cv_fold"])
        except ValueError as exc:
            raise DataArchiveError(f"{path.name}: {row['path']} has cv_fold {row['cv_fold']!r}, not 1-5") from exc
        if not 1 <= fold <= 5:
            raise DataArchiveError(f"{path.name}: {row['path']} has cv_fold {fold}, not 1-5")
        if member not in present:
            raise DataArchiveError(f"{path.name}: metadata.csv lists {row['path']} but the archive has no "
                                   f"{member} (truncated or repacked archive?)")
        folds_seen.add(fold)
        split = "test" if fold == rule.test_fold else "val" if fold == rule.val_fold else "train"
        entries.append(Entry(member, labels.index(cls), f"fold {fold}", split))
    if folds_seen != {1, 2, 3, 4, 5}:
        raise DataArchiveError(f"{path.name}: metadata.csv covers folds {sorted(folds_seen)}, expected 1-5")
    return entries


def index(path: Path, rule: SplitRule, labels: tuple[str, ...]) -> list[Entry]:
    """Every image of the archive with its label, group and split; checks the layout."""
    names = _member_names(path)
    if not names:
        raise DataArchiveError(f"{Path(path).name} holds no files")
    if rule.kind == "kermany-cxr":
        return _index_kermany(Path(path), names, rule, labels)
    return _index_cheng(Path(path), names, rule, labels)


# --- decoding and the cache -------------------------------------------------------------------------
def decode_display(name: str, data: bytes) -> np.ndarray:
    """JPEG bytes -> display image as :mod:`tools.imaging` gives it for a JPEG file (uint8 / 255)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataArchiveError(f"{name} in the archive is not a readable JPEG ({exc})") from exc
    return np.multiply(arr, np.float32(1.0 / 255.0), dtype=np.float32)


def _cache_key(sha: str, spec: Preprocessing) -> str:
    pipeline = {k: v for k, v in spec.as_json().items() if k not in ("mean", "std")}
    return f"{sha[:16]}-{hashlib.sha256(json.dumps(pipeline, sort_keys=True).encode()).hexdigest()[:10]}"


def scaled_images(path: Path, entries: list[Entry], spec: Preprocessing, cache_dir: Path | None,
                  sha: str | None = None, progress: Callable[[str], None] | None = None) -> np.ndarray:
    """(N, H, W) float32 scaled images of ``entries`` (all of them, in order), from the cache when there."""
    say = progress or log.info
    members = [e.member for e in entries]
    cache = None
    if cache_dir is not None:
        sha = sha or archive_sha256(path)
        cache = Path(cache_dir) / f"{Path(path).stem}-{_cache_key(sha, spec)}"
        if (cache / "images.npy").is_file() and (cache / "members.json").is_file():
            cached_members = json.loads((cache / "members.json").read_text())
            if cached_members == members:
                return np.load(cache / "images.npy", mmap_mode="r")
    h, w = spec.size
    out = np.empty((len(entries), h, w), dtype=np.float32)
    where = {m: i for i, m in enumerate(members)}
    for k, (name, data) in enumerate(iter_members(path, set(members)), 1):
        out[where[name]], _ = scaled(decode_display(name, data), spec)
        if k % 1000 == 0:
            say(f"decoded {k}/{len(entries)} images of {Path(path).name}")
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / "images.npy", out)
        (cache / "members.json").write_text(json.dumps(members))
    return out


def load_splits(path: Path, rule: SplitRule, labels: tuple[str, ...], spec: Preprocessing,
                cache_dir: Path | None, splits: tuple[str, ...] = SPLITS,
                progress: Callable[[str], None] | None = None) -> tuple[dict[str, SplitData], str]:
    """The requested splits of an archive as scaled images, and the archive's sha256."""
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise InputError(f"unknown split {bad[0]!r}; use one of {', '.join(SPLITS)}")
    entries = index(path, rule, labels)
    sha = archive_sha256(path)
    if cache_dir is None:  # decode only what is asked for; with a cache, decode everything once
        entries = [e for e in entries if e.split in splits]
    images = scaled_images(path, entries, spec, cache_dir, sha, progress)
    out: dict[str, SplitData] = {}
    for split in splits:
        idx = [i for i, e in enumerate(entries) if e.split == split]
        if not idx:
            raise DataArchiveError(f"{Path(path).name}: the {split} split is empty under the rule: {rule.describe()}")
        out[split] = SplitData(images=np.asarray(images[idx], dtype=np.float32),
                               labels=np.array([entries[i].label for i in idx], dtype=int),
                               groups=tuple(entries[i].group for i in idx),
                               members=tuple(entries[i].member for i in idx))
    return out, sha
