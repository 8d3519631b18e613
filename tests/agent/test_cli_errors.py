"""The CLI's last line of defence: a machine failure that reached it untyped (read-only or full disk, a
damaged or busy case database) becomes one `radconsult: error:` line with what to do, exit 2; anything
else (a bug) keeps its traceback."""

from __future__ import annotations

import errno
import sqlite3

import pytest

from agent.cli import environment_error, main


@pytest.mark.parametrize(("exc", "words"), [
    (OSError(errno.EROFS, "Read-only file system", "{data}/cases.sqlite"), ("writable", "RADCONSULT_DATA_DIR")),
    (OSError(errno.EACCES, "Permission denied", "{data}/users.json"), ("writable",)),
    (OSError(errno.EACCES, "Permission denied", "/srv/scans/a.dcm"), ("/srv/scans/a.dcm", "read and written")),
    (OSError(errno.ENOSPC, "No space left on device", "{data}/x"), ("free space",)),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), ("free space",)),
    (sqlite3.OperationalError("attempt to write a readonly database"), ("case database", "writable")),
    (sqlite3.OperationalError("unable to open database file"), ("case database", "writable")),
    (sqlite3.OperationalError("database or disk is full"), ("free space",)),
    (sqlite3.DatabaseError("database disk image is malformed"), ("move it aside", "audit log and signed summaries")),
    (sqlite3.OperationalError("database is locked"), ("try again",)),
])
def test_machine_failures_say_what_to_do(settings, exc, words):
    if isinstance(exc, OSError) and exc.filename:
        exc.filename = exc.filename.format(data=settings.data_dir)
    message = environment_error(exc, settings)
    assert message is not None and "\n" not in message
    for w in words:
        assert w in message


@pytest.mark.parametrize("exc", [OSError(errno.ENOENT, "No such file"), sqlite3.OperationalError("no such table: x"),
                                 ValueError("a bug")])
def test_anything_else_is_not_explained_away(exc):
    assert environment_error(exc, None) is None


def test_main_turns_a_read_only_disk_into_one_line(settings, monkeypatch, capsys):
    import agent.settings as settings_module

    def boom(**_):
        raise OSError(errno.EROFS, "Read-only file system", str(settings.data_dir / "x"))

    monkeypatch.setattr(settings_module, "load_settings", boom)
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("radconsult: error: Read-only file system")


def test_main_keeps_the_traceback_of_a_bug(monkeypatch):
    import agent.settings as settings_module

    def bug(**_):
        raise OSError(errno.ENOENT, "No such file or directory", "/nowhere")

    monkeypatch.setattr(settings_module, "load_settings", bug)
    with pytest.raises(OSError):
        main(["config"])
