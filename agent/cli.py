"""`radconsult` command line. Each area registers its subcommands from ``agent/commands/``.

Every command prints a clear message on a :class:`~tools.errors.RadconsultError` and exits 2,
never a traceback; ``--json`` gives machine-readable output where a command has results.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import logging
import sqlite3
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tools.errors import RadconsultError

if TYPE_CHECKING:
    from agent.settings import Settings

# Modules in agent/commands/ that expose ``register(subparsers)``; each adds its own subcommands
# and sets ``func(args, settings) -> int`` on them.
COMMAND_MODULES = ("config", "doctor", "imaging", "models", "kb", "ask", "ui", "pacs")


def build_parser() -> argparse.ArgumentParser:
    from agent import __version__

    parser = argparse.ArgumentParser(prog="radconsult", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"radconsult {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"agent.commands.{name}")
        module.register(sub)
    return parser


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str, ensure_ascii=False))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    settings = None
    try:
        from agent.settings import load_settings

        settings = load_settings()
        return int(args.func(args, settings) or 0)
    except RadconsultError as exc:
        print(f"radconsult: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as exc:
        message = environment_error(exc, settings)
        if message is None:
            raise
        logging.getLogger(__name__).debug("environment failure", exc_info=True)
        print(f"radconsult: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _inside(path: str, directory: object) -> bool:
    from pathlib import Path

    try:
        return Path(path).resolve().is_relative_to(Path(str(directory)).resolve())
    except (OSError, ValueError):
        return False


_WRITABLE = "make the data directory writable, or set RADCONSULT_DATA_DIR to a writable place"
_FULL = "the disk is full: free space, then run the command again"


def environment_error(exc: BaseException, settings: Settings | None = None) -> str | None:
    """One line for a failure of the machine that reached the CLI untyped (a read-only or full disk, a
    damaged or locked case database): what happened and what to do. None for anything else, which is
    a bug and keeps its traceback. The modules that own a file turn their own failures into typed
    errors; this is the last line of defence, so that no command ever shows a traceback for them."""
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"{exc.strerror}{where}; {_FULL}"
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            data_dir = settings.data_dir if settings is not None else None
            if exc.filename and data_dir is not None and not _inside(str(exc.filename), data_dir):
                return f"{exc.strerror}{where}; check that this path may be read and written by you"
            return f"{exc.strerror}{where}; {_WRITABLE}"
        return None
    if isinstance(exc, sqlite3.Error):
        text = str(exc)
        low = text.lower()
        cases = settings.cases_db_path if settings is not None else "the case database"
        if "readonly" in low or "read-only" in low or "unable to open" in low:
            return f"cannot write the case database {cases} ({text}); {_WRITABLE}"
        if "full" in low:
            return f"cannot write the case database {cases} ({text}); {_FULL}"
        if "malformed" in low or "not a database" in low or "disk i/o" in low:
            return (f"the case database {cases} is damaged ({text}); move it aside and run the command again: "
                    "the cases' conversation memory is lost, the audit log and signed summaries are not")
        if "locked" in low or "busy" in low:
            return f"the case database {cases} is busy ({text}); try again in a moment"
        return None
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
