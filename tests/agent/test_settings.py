"""Settings: defaults, environment, TOML file, validation, and `radconsult config`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.cli import main
from agent.settings import Settings


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    for key in ("RADCONSULT_CONFIG", "RADCONSULT_DATA_DIR", "RADCONSULT_DEVICE", "RADCONSULT_MODEL_DIRS"):
        monkeypatch.delenv(key, raising=False)


def test_defaults_live_under_the_data_dir(tmp_path: Path) -> None:
    s = Settings()
    assert s.data_dir == tmp_path / "share" / "radconsult"
    assert s.max_file_bytes == 512 * 1024 * 1024
    for derived in (s.secret_path, s.kb_dir, s.cache_dir, s.audit_log_path, s.users_path, s.cases_db_path):
        assert derived.is_relative_to(s.data_dir)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("RADCONSULT_DEVICE", "cpu")
    monkeypatch.setenv("RADCONSULT_MODEL_DIRS", f"{tmp_path / 'a'},{tmp_path / 'b'}")
    s = Settings()
    assert s.data_dir == tmp_path / "d"
    assert s.device == "cpu"
    assert s.model_dirs == [tmp_path / "a", tmp_path / "b"]


def test_toml_file_is_read_and_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "radconsult.toml"
    cfg.write_text('device = "cuda"\nmax_frames = 12\n')
    monkeypatch.setenv("RADCONSULT_CONFIG", str(cfg))
    assert Settings().max_frames == 12
    monkeypatch.setenv("RADCONSULT_DEVICE", "cpu")
    s = Settings()
    assert (s.device, s.max_frames) == ("cpu", 12)


@pytest.mark.parametrize("bad", [{"device": "tpu"}, {"max_file_bytes": 0}, {"port": 70000}, {"nonsense": 1}])
def test_invalid_values_are_rejected(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_config_command_prints_effective_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(tmp_path / "x"))
    assert main(["config", "--json"]) == 0
    values = json.loads(capsys.readouterr().out)
    assert values["data_dir"] == str(tmp_path / "x")
    assert values["device"] == "auto"
    assert main(["config"]) == 0
    assert f"data_dir = {tmp_path / 'x'}" in capsys.readouterr().out


def test_bad_environment_value_is_a_clean_error(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RADCONSULT_DEVICE", "tpu")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert "device" in err and "Traceback" not in err


def test_readme_documents_every_setting() -> None:
    from tests.conftest import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    missing = [f"RADCONSULT_{name.upper()}" for name in Settings.model_fields
               if f"`RADCONSULT_{name.upper()}`" not in readme]
    assert not missing, f"README configuration table lacks {missing}; regenerate with `radconsult config --markdown`"


def test_markdown_table_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert all(f"`RADCONSULT_{name.upper()}`" in out for name in Settings.model_fields)
