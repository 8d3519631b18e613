"""The real-resolution archives: layout checks, patient-wise splits, the decode cache, typed errors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from agent.wiring import imaging_config
from tests.conftest import shared_file
from tools.classifiers.archives import SplitRule, index, load_splits
from tools.classifiers.preprocess import Preprocessing, prepare_spec
from tools.errors import DataArchiveError, InputError

from .helpers import CHENG, KERMANY, archive_members, tiny_cheng, tiny_kermany, write_tar

CXR_LABELS = ("normal", "pneumonia")
MRI_LABELS = ("meningioma", "glioma", "pituitary")
CXR_SPEC = Preprocessing(size=(224, 224), geometry="stretch", intensity="percentiles")


def test_kermany_split_is_patient_wise_and_keeps_the_test_folder():
    entries = index(shared_file(KERMANY), SplitRule("kermany-cxr"), CXR_LABELS)
    splits = Counter(e.split for e in entries)
    assert splits["test"] == 624 and splits["train"] + splits["val"] == 5216
    assert 0.08 < splits["val"] / 5216 < 0.16
    test = Counter(e.label for e in entries if e.split == "test")
    assert test == {0: 234, 1: 390}
    val_patients = {e.group for e in entries if e.split == "val"}
    train_patients = {e.group for e in entries if e.split == "train"}
    assert val_patients and not val_patients & train_patients
    # the rule has no seed: the same split every time
    assert index(shared_file(KERMANY), SplitRule("kermany-cxr"), CXR_LABELS) == entries


def test_cheng_split_follows_the_author_folds():
    entries = index(shared_file(CHENG), SplitRule("cheng-brain-mri", test_fold=5, val_fold=4), MRI_LABELS)
    assert len(entries) == 3064
    assert {e.group for e in entries if e.split == "test"} == {"fold 5"}
    assert {e.group for e in entries if e.split == "val"} == {"fold 4"}
    assert {e.group for e in entries if e.split == "train"} == {"fold 1", "fold 2", "fold 3"}
    assert Counter(e.split for e in entries)["test"] == 664
    rotated = index(shared_file(CHENG), SplitRule("cheng-brain-mri", test_fold=1, val_fold=5), MRI_LABELS)
    assert {e.group for e in rotated if e.split == "test"} == {"fold 1"}


def test_training_cache_equals_the_inference_path(tmp_path, settings):
    """The scaled images training sees are what classify() computes from the same JPEG."""
    from tools.imaging import load  # the loader clinicians' files go through

    archive = tiny_kermany(tmp_path, per_folder=2)
    data, sha = load_splits(archive, SplitRule("kermany-cxr"), CXR_LABELS, CXR_SPEC, tmp_path / "cache", ("test",))
    assert len(sha) == 64
    spec = Preprocessing(size=(224, 224), mean=0.5, std=0.25, geometry="stretch", intensity="percentiles")
    jpegs = archive_members(archive, list(data["test"].members))
    for member, cached in zip(data["test"].members, data["test"].images, strict=True):
        path = tmp_path / member.rsplit("/", 1)[-1]
        path.write_bytes(jpegs[member])
        study = load(path, imaging_config(settings))
        x, _ = prepare_spec(study.display, spec)
        np.testing.assert_allclose(x[0], (cached - 0.5) / 0.25, atol=1e-4)
    # the cache answers the second call with the same arrays
    again, _ = load_splits(archive, SplitRule("kermany-cxr"), CXR_LABELS, CXR_SPEC, tmp_path / "cache", ("test",))
    np.testing.assert_array_equal(again["test"].images, data["test"].images)
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_missing_truncated_and_wrong_layout_archives(tmp_path):
    rule = SplitRule("kermany-cxr")
    with pytest.raises(DataArchiveError, match="not found"):
        load_splits(tmp_path / "nope.tar", rule, CXR_LABELS, CXR_SPEC, None)
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar archive at all" * 40)
    with pytest.raises(DataArchiveError, match="not a readable tar archive"):
        load_splits(junk, rule, CXR_LABELS, CXR_SPEC, None)
    good = tiny_kermany(tmp_path, per_folder=2)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataArchiveError, match="truncated"):
        load_splits(cut, rule, CXR_LABELS, CXR_SPEC, None)
    # the brain archive given to the chest recipe, and the chest archive given to the brain recipe
    brain = tiny_cheng(tmp_path, per_fold_class=1)
    with pytest.raises(DataArchiveError, match="Kermany layout.*chest_xray_224/train/NORMAL"):
        load_splits(brain, rule, CXR_LABELS, CXR_SPEC, None)
    with pytest.raises(DataArchiveError, match="Cheng layout.*metadata.csv"):
        index(good, SplitRule("cheng-brain-mri"), MRI_LABELS)
    # a layout with one class folder missing names it
    files = archive_members(good, [n for n in _names(good) if "/test/NORMAL/" not in n])
    with pytest.raises(DataArchiveError, match="chest_xray_224/test/NORMAL/"):
        index(write_tar(tmp_path / "half.tar", files), rule, CXR_LABELS)
    # a corrupt JPEG inside a well-formed archive
    files = archive_members(good, _names(good))
    first = sorted(files)[0]
    files[first] = b"\xff\xd8 not really a jpeg"
    with pytest.raises(DataArchiveError, match="not a readable JPEG"):
        load_splits(write_tar(tmp_path / "bad.tar", files), rule, CXR_LABELS, CXR_SPEC, None)


def test_cheng_metadata_problems_are_named(tmp_path):
    good = tiny_cheng(tmp_path, per_fold_class=1)
    files = archive_members(good, _names(good))
    meta = files["figshare_cheng_brain_tumor/metadata.csv"].decode().splitlines()
    broken = dict(files)
    broken["figshare_cheng_brain_tumor/metadata.csv"] = "\n".join(
        [meta[0], *meta[1:], "glioma/99999.jpg,99999,2,glioma,3,abc"]).encode()
    with pytest.raises(DataArchiveError, match="99999.jpg"):
        index(write_tar(tmp_path / "extra.tar", broken), SplitRule("cheng-brain-mri"), MRI_LABELS)
    fields = meta[1].split(",")
    fields[4] = "7"  # cv_fold
    broken["figshare_cheng_brain_tumor/metadata.csv"] = "\n".join([meta[0], ",".join(fields), *meta[2:]]).encode()
    with pytest.raises(DataArchiveError, match="cv_fold"):
        index(write_tar(tmp_path / "fold.tar", broken), SplitRule("cheng-brain-mri"), MRI_LABELS)
    broken["figshare_cheng_brain_tumor/metadata.csv"] = b"file,label\nx.jpg,1\n"
    with pytest.raises(DataArchiveError, match="lacks the columns"):
        index(write_tar(tmp_path / "cols.tar", broken), SplitRule("cheng-brain-mri"), MRI_LABELS)


def test_split_rules_are_checked():
    with pytest.raises(InputError, match="different folds"):
        SplitRule("cheng-brain-mri", test_fold=4, val_fold=4)
    with pytest.raises(InputError, match="unknown archive kind"):
        SplitRule("imagenet")
    rule = SplitRule("cheng-brain-mri", test_fold=2, val_fold=1)
    assert SplitRule.from_json(rule.as_json()) == rule


def _names(archive) -> list[str]:
    import tarfile

    with tarfile.open(archive) as tf:
        return tf.getnames()
