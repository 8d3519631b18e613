"""`radconsult` command line. Each area registers its subcommands from ``agent/commands/``.

Every command prints a clear message on a :class:`~tools.errors.RadconsultError` and exits 2,
never a traceback; ``--json`` gives machine-readable output where a command has results.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence

from tools.errors import RadconsultError

# Modules in agent/commands/ that expose ``register(subparsers)``; each adds its own subcommands
# and sets ``func(args, settings) -> int`` on them.
COMMAND_MODULES = ("config", "imaging", "models", "kb", "ask", "ui", "pacs")


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
    try:
        from agent.settings import load_settings

        settings = load_settings()
        return int(args.func(args, settings) or 0)
    except RadconsultError as exc:
        print(f"radconsult: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
