"""`radconsult ui`, `radconsult users add|list|remove`, `radconsult audit verify|reset`.

``radconsult ui`` binds 127.0.0.1:7860 by default with the embedded defaults. Authentication is
off only on a loopback address (with a notice); any other address refuses to start until
``radconsult users add NAME`` has created an account.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tools.errors import InputError

if TYPE_CHECKING:
    from agent.consultation import Consultation
    from agent.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="start the consultation UI (default http://127.0.0.1:7860)")
    p.add_argument("--host", default=None, help="address to bind (default: settings.host, 127.0.0.1); "
                                                "anything but loopback needs users")
    p.add_argument("--port", type=int, default=None, help="port (default: settings.port, 7860)")
    p.set_defaults(func=run_ui)

    users = sub.add_parser("users", help="manage the clinicians who may log in to the UI")
    usub = users.add_subparsers(dest="users_command", metavar="ACTION")
    users.set_defaults(func=lambda args, settings: _help(users))
    add = usub.add_parser("add", help="add a user (password from a prompt or --password-stdin)")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    add.add_argument("--replace", action="store_true", help="set a new password for an existing user")
    add.set_defaults(func=run_users_add)
    lst = usub.add_parser("list", help="list user names")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=run_users_list)
    rm = usub.add_parser("remove", help="remove a user")
    rm.add_argument("name")
    rm.set_defaults(func=run_users_remove)

    audit = sub.add_parser("audit", help="the audit log")
    asub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    audit.set_defaults(func=lambda args, settings: _help(audit))
    ver = asub.add_parser("verify", help="check the audit log and the signed summaries against the integrity "
                                         "key; exit 1 when anything was edited, forged, inserted, rolled back "
                                         "or deleted (read-only)")
    ver.add_argument("--json", action="store_true")
    ver.set_defaults(func=run_audit_verify)
    rst = asub.add_parser("reset", help="after a failed verify: archive the broken audit log and/or signature "
                                        "ledger (kept as *.broken-TIME) and start new ones")
    rst.add_argument("--yes", action="store_true", help="needed: confirms that the evidence is to be archived")
    rst.add_argument("--json", action="store_true")
    rst.set_defaults(func=run_audit_reset)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 1


def _store(settings: Settings):
    from agent.users import UserStore

    return UserStore(settings.users_path)


def run_users_add(args: argparse.Namespace, settings: Settings) -> int:
    from agent.audit import AuditLog

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Repeat: ") != password:
            raise InputError("the passwords differ")
    audit = AuditLog.from_settings(settings)
    audit.check_writable()  # refuse before the change, not after it
    _store(settings).add(args.name, password, replace=args.replace)
    done = f"user {args.name} {'updated' if args.replace else 'added'}"
    _audit_done(audit, done, "user_add", user=args.name, details={"replace": args.replace})
    print(f"{done} ({settings.users_path})")
    return 0


def _audit_done(audit, done: str, action: str, **record: object) -> None:  # noqa: ANN001 - AuditLog
    """Record a change that has happened; if the record cannot be written now, say both."""
    from agent.audit import AuditError

    try:
        audit.append(action, **record)
    except AuditError as exc:
        raise AuditError(f"{done}, but its audit record could not be written ({exc}); run "
                         "`radconsult audit verify`") from None


def run_users_list(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json

    names = _store(settings).names()
    if args.json:
        print_json({"users": names, "path": str(settings.users_path)})
    else:
        print("\n".join(names) if names else "no users (the UI then only runs on loopback)")
    return 0


def run_users_remove(args: argparse.Namespace, settings: Settings) -> int:
    from agent.audit import AuditLog

    audit = AuditLog.from_settings(settings)
    audit.check_writable()
    _store(settings).remove(args.name)
    _audit_done(audit, f"user {args.name} removed", "user_remove", user=args.name)
    print(f"user {args.name} removed")
    return 0


def _verify_all(settings: Settings) -> dict[str, object]:
    from agent.audit import AuditLog
    from agent.signoff import ReportStore

    audit = AuditLog.from_settings(settings).verify()
    reports = ReportStore.from_settings(settings).verify()
    return {"ok": audit.ok and reports.ok, "key": str(settings.integrity_key_file),
            "audit": audit.to_dict(), "reports": reports.to_dict()}


def _print_part(title: str, part: dict, summary: str) -> None:
    if part["ok"]:
        print(f"{title} OK: {summary} ({part['path']})")
    else:
        print(f"{title} FAILED verification ({part['path']}):", file=sys.stderr)
        for p in part["problems"]:
            print(f"  {p}", file=sys.stderr)
    for w in part["warnings"]:
        print(f"  note: {w}", file=sys.stderr)


def run_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json

    result = _verify_all(settings)
    if args.json:
        print_json(result)
    else:
        audit, reports = result["audit"], result["reports"]
        _print_part("audit log", audit, f"{audit['records']} records, chain intact")
        _print_part("signed summaries", reports, f"{reports['records']} versions, "
                    f"{reports['head'].get('signatures', 0)} signatures intact")
    return 0 if result["ok"] else 1


def run_audit_reset(args: argparse.Namespace, settings: Settings) -> int:
    from agent.audit import AuditLog, file_sha256
    from agent.cli import print_json
    from agent.signoff import ReportStore

    result = _verify_all(settings)
    if result["ok"]:
        raise InputError("the audit log and the signed summaries verify, so there is nothing to reset; run "
                         "`radconsult audit verify` for the details")
    if not args.yes:
        raise InputError("this archives the failing audit log and/or signature ledger and starts new ones; "
                         "run `radconsult audit verify` first, keep its output, then repeat with --yes")
    done: dict[str, object] = {}
    audit_log = AuditLog.from_settings(settings)
    if not result["audit"]["ok"]:
        archive, _ = audit_log.reset()
        done["audit"] = str(archive) if archive else None
    store = ReportStore.from_settings(settings)
    ledger_broken = any(str(p).startswith("signature ledger:") for p in result["reports"]["problems"])
    if ledger_broken:
        archive, _ = store.ledger.reset()
        done["signature_ledger"] = str(archive) if archive else None
    details: dict[str, object] = {"audit_problems": len(result["audit"]["problems"]),
                                  "report_problems": len(result["reports"]["problems"])}
    for what, archive in done.items():
        details[f"{what}_archive_sha256"] = file_sha256(Path(archive)) if archive else None
    audit_log.append("audit_reset", user=None, details=details)
    if args.json:
        print_json({"archived": done, "before": result})
    else:
        for what, archive in done.items():
            print(f"{what}: archived as {archive}" if archive else f"{what}: was missing; new chain started")
        if not ledger_broken and not result["reports"]["ok"]:
            print("signed summaries: the problems listed by `radconsult audit verify` are in the summary "
                  "files themselves; restore them from a backup (a reset cannot fix them)", file=sys.stderr)
    return 0


def make_agent(settings: Settings) -> Consultation:
    """The real consultation agent with the embedded defaults (built here, passed into the UI)."""
    from agent.consultation import Consultation

    return Consultation(settings)


def run_ui(args: argparse.Namespace, settings: Settings) -> int:
    from agent.doctor import run_checks
    from agent.ui import bind_policy, build_ui, launch
    from agent.ui.health import StartupChecks

    host = args.host or settings.host
    port = args.port or settings.port
    auth = bind_policy(host, settings)  # refuses a public bind without users, before any model loads
    if auth is None:
        print(f"radconsult ui: authentication is OFF because {host} is a loopback address; only this "
              "machine can connect. Add users (`radconsult users add NAME`) before binding elsewhere.",
              file=sys.stderr)
    agent = make_agent(settings)
    # Prepare the knowledge base and the model's prompt prefix while the page loads. A question the rules
    # answer (a calculator, a table) goes ahead at once; one that needs the model or a search waits for it
    # with a visible status rather than racing it for the CPU.
    print("radconsult ui: preparing the knowledge base and the language model in the background (questions "
          "the guideline rules answer are answered meanwhile)", file=sys.stderr)
    agent.start_warm_up()
    # then the doctor's checks, with the app's own model: a failure is shown at the top of the page
    health = StartupChecks()
    health.start(agent.wait_until_ready, lambda: run_checks(settings, backend=agent.backend))
    demo = build_ui(agent, settings, health)
    print(f"radconsult ui: http://{host}:{port}  (Ctrl+C to stop)", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C may reach us rather than Gradio's own loop
        launch(demo, settings, host=host, port=port, auth=auth, block=True)
    if not agent.is_warm:
        # Ctrl+C during the warm-up: its thread may be inside native code (ONNX Runtime, llama.cpp), and
        # tearing the interpreter down under it aborts the process. The server is closed and the audit
        # log and case database are written through, so leave without the teardown.
        print("radconsult ui: stopped during the warm-up", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
