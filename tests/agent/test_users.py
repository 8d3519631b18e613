from __future__ import annotations

import io
import json
import stat

import pytest

from agent.users import UserStore
from tools.errors import InputError


@pytest.fixture
def store(settings):
    return UserStore(settings.users_path, rounds=4)


def test_add_verify_list(store, settings):
    store.add("dr_smith", "correct horse battery")
    assert store.verify("dr_smith", "correct horse battery")
    assert not store.verify("dr_smith", "wrong password!")
    assert not store.verify("nobody", "correct horse battery")
    assert store.names() == ["dr_smith"]
    text = settings.users_path.read_text()
    assert "correct horse" not in text and "$2b$" in text
    assert stat.S_IMODE(settings.users_path.stat().st_mode) == 0o600


def test_salted(store, settings):
    store.add("a_user", "same password 1")
    store.add("b_user", "same password 1")
    users = json.loads(settings.users_path.read_text())["users"]
    assert users["a_user"]["hash"] != users["b_user"]["hash"]


@pytest.mark.parametrize("name", ["", "1abc", "a b", "x" * 80, "../etc", "ä"])
def test_bad_names(store, name):
    with pytest.raises(InputError):
        store.add(name, "long enough pw")


def test_bad_passwords(store):
    with pytest.raises(InputError, match="short"):
        store.add("dr_a", "short")
    with pytest.raises(InputError, match="long"):
        store.add("dr_a", "x" * 80)


def test_duplicate_and_replace(store):
    store.add("dr_a", "first password")
    with pytest.raises(InputError, match="exists"):
        store.add("dr_a", "second password")
    store.add("dr_a", "second password", replace=True)
    assert store.verify("dr_a", "second password") and not store.verify("dr_a", "first password")
    store.remove("dr_a")
    assert store.names() == []
    with pytest.raises(InputError):
        store.remove("dr_a")


def test_corrupt_file(settings):
    from agent.users import UserStoreError

    settings.users_path.parent.mkdir(parents=True, exist_ok=True)
    settings.users_path.write_text("{nope")
    with pytest.raises(UserStoreError):
        UserStore(settings.users_path).names()


def test_cli_users_add_list(settings, monkeypatch, capsys):
    from agent.cli import main

    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setattr("sys.stdin", io.StringIO("a good password\n"))
    assert main(["users", "add", "dr_cli", "--password-stdin"]) == 0
    assert main(["users", "list", "--json"]) == 0
    out = capsys.readouterr().out
    assert "dr_cli" in out
    assert UserStore(settings.users_path).verify("dr_cli", "a good password")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "dr_two", "--password-stdin"]) == 2
    # the audit log recorded the addition, without the password
    log = settings.audit_log_path.read_text()
    assert "user_add" in log and "good password" not in log


def test_cli_prompt_mismatch_and_no_action(settings, monkeypatch, capsys):
    from agent.cli import main

    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(settings.data_dir))
    answers = iter(["first password", "other password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["users", "add", "dr_p"]) == 2
    assert "differ" in capsys.readouterr().err
    assert not settings.users_path.exists()
    assert main(["users"]) == 1 and main(["audit"]) == 1
