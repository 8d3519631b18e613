"""Shared fixtures: isolated settings per test, the ../shared data, pydicom sample files by exact name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agent.settings import Settings

if TYPE_CHECKING:
    from tools.deid import DeidPolicy
    from tools.imaging import ImagingConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """../shared beside the project, or RADCONSULT_SHARED."""
    return Path(os.environ.get("RADCONSULT_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture
def shared_data() -> Path:
    path = shared_dir() / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set RADCONSULT_SHARED to the shared/ folder)")
    return path


def shared_file(relative: str) -> Path:
    path = shared_dir() / "data" / relative
    if not path.exists():
        pytest.skip(f"shared data file {relative} not found under {shared_dir()}")
    return path


def pydicom_file(name: str) -> Path:
    """A pydicom / pydicom-data sample by exact file name (a wildcard search would go to the network)."""
    from pydicom.data import get_testdata_file

    try:
        path = get_testdata_file(name, download=False)
    except Exception as exc:  # pragma: no cover - depends on the installed data packages
        pytest.skip(f"pydicom test file {name} unavailable: {exc}")
    if path is None:
        pytest.skip(f"pydicom test file {name} not installed (pip install pydicom-data)")
    return Path(path)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with a private data directory; no user config file leaks in."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.delenv("RADCONSULT_CONFIG", raising=False)
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def policy(settings: Settings) -> DeidPolicy:
    """The de-identification policy of the isolated settings (secret under the test's data dir)."""
    from agent.wiring import deid_policy

    return deid_policy(settings)


@pytest.fixture
def imaging_config(settings: Settings) -> ImagingConfig:
    """The image loader's config (limits and de-identification policy) of the isolated settings."""
    from agent.wiring import imaging_config as build

    return build(settings)
