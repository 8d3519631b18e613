"""`radconsult doctor`: check this machine end to end (CPU, the language model in a child process, each
classifier, the knowledge base, storage and audit key, and the PACS / Chroma / LLM servers when configured).

Prints one line per check with what to do when it fails; exits 1 when any check failed, else 0.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.settings import Settings

MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "-"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check this machine end to end (run it right after installing)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-llm", action="store_true", help="skip asking the language model (the slowest check)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json
    from agent.doctor import failed, run_checks

    checks = run_checks(settings, llm=not args.no_llm)
    bad = failed(checks)
    if args.json:
        print_json({"ok": not bad, "checks": [c.to_dict() for c in checks]})
        return 1 if bad else 0
    width = max(len(c.name) for c in checks)
    for c in checks:
        took = f"{c.ms / 1000:5.1f} s" if c.ms >= 50 else " " * 7
        line = f"{MARK[c.status]:<4}  {c.name:<{width}}  {took}  {c.detail}"
        if c.fix and c.status in ("fail", "warn"):
            line += f"\n{'':<4}  {'':<{width}}  {'':7}  -> {c.fix}"
        print(line)
    print(f"\n{len(bad)} check(s) failed" if bad else f"\nall {sum(c.status != 'skip' for c in checks)} checks "
          "passed" + (f" ({sum(c.status == 'warn' for c in checks)} with warnings)"
                      if any(c.status == "warn" for c in checks) else ""))
    return 1 if bad else 0
