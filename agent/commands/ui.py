"""`radconsult ui`, `radconsult users add|list|remove`, `radconsult audit verify`.

``radconsult ui`` binds 127.0.0.1:7860 by default with the embedded defaults. Authentication is
off only on a loopback address (with a notice); any other address refuses to start until
``radconsult users add NAME`` has created an account.
"""

from __future__ import annotations

import argparse
import getpass
import sys
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
    ver = asub.add_parser("verify", help="check the hash chain; exit 1 when any record was edited, "
                                         "inserted or deleted")
    ver.add_argument("--json", action="store_true")
    ver.set_defaults(func=run_audit_verify)


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
    _store(settings).add(args.name, password, replace=args.replace)
    AuditLog(settings.audit_log_path).append("user_add", user=args.name, details={"replace": args.replace})
    print(f"user {args.name} {'updated' if args.replace else 'added'} ({settings.users_path})")
    return 0


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

    _store(settings).remove(args.name)
    AuditLog(settings.audit_log_path).append("user_remove", user=args.name)
    print(f"user {args.name} removed")
    return 0


def run_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from agent.audit import verify
    from agent.cli import print_json

    report = verify(settings.audit_log_path)
    if args.json:
        print_json(report.to_dict())
    elif report.ok:
        print(f"audit log OK: {report.records} records, chain intact ({report.path})")
    else:
        print(f"audit log FAILED verification ({report.path}):", file=sys.stderr)
        for p in report.problems:
            print(f"  {p}", file=sys.stderr)
    return 0 if report.ok else 1


def make_agent(settings: Settings) -> Consultation:
    """The real consultation agent with the embedded defaults (built here, passed into the UI)."""
    from agent.consultation import Consultation

    return Consultation(settings)


def run_ui(args: argparse.Namespace, settings: Settings) -> int:
    from agent.ui import bind_policy, build_ui, launch

    host = args.host or settings.host
    port = args.port or settings.port
    auth = bind_policy(host, settings)  # refuses a public bind without users, before any model loads
    if auth is None:
        print(f"radconsult ui: authentication is OFF because {host} is a loopback address; only this "
              "machine can connect. Add users (`radconsult users add NAME`) before binding elsewhere.",
              file=sys.stderr)
    agent = make_agent(settings)
    # Prepare the knowledge base and the model's prompt prefix while the page loads; a question asked
    # meanwhile waits for it with a visible status rather than racing it for the CPU.
    print("radconsult ui: preparing the knowledge base and the language model in the background",
          file=sys.stderr)
    agent.start_warm_up()
    demo = build_ui(agent, settings)
    print(f"radconsult ui: http://{host}:{port}  (Ctrl+C to stop)", file=sys.stderr)
    launch(demo, settings, host=host, port=port, auth=auth, block=True)
    return 0
