"""`radconsult config`: print the effective settings."""

from __future__ import annotations

import argparse

from agent.settings import Settings, config_file_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="print the effective settings")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json

    values = settings.public_dict()
    if args.json:
        print_json(values)
        return 0
    path = config_file_path()
    print(f"# config file: {path if path else '(none)'}; environment prefix RADCONSULT_")
    for key, value in values.items():
        print(f"{key} = {value}")
    return 0
