"""`radconsult config`: print the effective settings."""

from __future__ import annotations

import argparse

from agent.settings import Settings, config_file_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="print the effective settings")
    p.add_argument("--json", action="store_true")
    p.add_argument("--markdown", action="store_true", help="every setting as a Markdown table (for the README)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json

    values = settings.public_dict()
    if args.markdown:
        print(settings_table())
        return 0
    if args.json:
        print_json(values)
        return 0
    path = config_file_path()
    print(f"# config file: {path if path else '(none)'}; environment prefix RADCONSULT_")
    for key, value in values.items():
        print(f"{key} = {value}")
    return 0


def settings_table() -> str:
    """Markdown table of every setting: environment name, default, meaning."""
    rows = ["| environment variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = "per-user data dir" if name == "data_dir" else (
            "[]" if field.default_factory is list else field.default)
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `RADCONSULT_{name.upper()}` | `{default}` | {meaning} |")
    return "\n".join(rows)
