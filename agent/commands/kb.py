"""`radconsult kb ...`: ingest, search, stats, delete and (re)build the knowledge base."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    kb = sub.add_parser("kb", help="the knowledge base of guidelines and prior reports")
    kb_sub = kb.add_subparsers(dest="kb_command", metavar="ACTION")
    kb.set_defaults(func=lambda args, settings: _help(kb))

    p = kb_sub.add_parser("ingest", help="add documents (Markdown, text, HTML, PDF, DICOM SR, FHIR JSON)")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders")
    p.add_argument("--kind", choices=("guideline", "report"),
                   help="collection (default: the front matter's kind; DICOM SR and FHIR are reports)")
    p.add_argument("--patient", metavar="KEY",
                   help="pseudonymous patient key for these reports (never a raw patient ID)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ingest)

    p = kb_sub.add_parser("watch", help="ingest files as they arrive in a folder (a report stream)")
    p.add_argument("directory", type=Path, metavar="DIR", help="the folder to watch (and its subfolders)")
    p.add_argument("--kind", choices=("guideline", "report"),
                   help="collection (default: the front matter's kind; DICOM SR and FHIR are reports)")
    p.add_argument("--patient", metavar="KEY", help="pseudonymous patient key for every file (rarely right "
                   "for a stream: DICOM SR and FHIR carry their own)")
    p.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between scans (0.2-3600)")
    p.add_argument("--once", action="store_true", help="ingest what is there now, then exit")
    p.add_argument("--json", action="store_true", help="one JSON line per ingested batch")
    p.set_defaults(func=cmd_watch)

    p = kb_sub.add_parser("search", help="hybrid search with citations")
    p.add_argument("query")
    p.add_argument("--kind", choices=("guideline", "report", "all"), default="guideline")
    p.add_argument("--patient", metavar="KEY", help="only this patient's reports")
    p.add_argument("--modality", help="only this modality (CT, CR, MG, US, ...)")
    p.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="studies on or after")
    p.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="studies on or before")
    p.add_argument("--k", type=int, default=5, help="number of passages (1-100)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = kb_sub.add_parser("stats", help="what the knowledge base holds")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)

    p = kb_sub.add_parser("delete", help="remove one source")
    p.add_argument("--source", required=True, help="the stored source name, or the path it came from")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_delete)

    p = kb_sub.add_parser("build", help="(re)build the bundled guideline corpus and demo reports")
    p.add_argument("--force", action="store_true", help="rebuild even when it is up to date")
    p.add_argument("--rebuild", action="store_true",
                   help="for a damaged embedded store: move it aside (kept as kb.damaged-TIME) and build a new "
                        "one; documents added with `kb ingest` must be ingested again")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_build)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 1


def _kb(settings: Settings):  # noqa: ANN202 - KnowledgeBase, imported lazily
    from agent.wiring import knowledge_config
    from knowledge.base import KnowledgeBase

    return KnowledgeBase(knowledge_config(settings)).open()


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json

    kb = _kb(settings)
    report = kb.ingest(args.paths, kind=args.kind, patient=args.patient,
                       progress=False if args.no_progress or args.json else None)
    if args.json:
        print_json(report.to_dict())
    else:
        for warning in report.warnings:
            print(f"radconsult: warning: {warning}", file=sys.stderr)
        for path, reason in report.failed.items():
            print(f"radconsult: skipped {path}: {reason}", file=sys.stderr)
        print(report.summary())
    return 2 if report.failed else 0


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    import json
    import signal
    import threading

    watcher = _kb(settings).watcher(args.directory, kind=args.kind, patient=args.patient, interval=args.interval)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    failed = False

    def show(report) -> None:  # noqa: ANN001 - knowledge.ingest.IngestReport
        nonlocal failed
        failed = failed or bool(report.failed)
        if args.json:
            print(json.dumps(report.to_dict()), flush=True)
            return
        for warning in report.warnings:
            print(f"radconsult: warning: {warning}", file=sys.stderr)
        for path, reason in report.failed.items():
            print(f"radconsult: skipped {path}: {reason}", file=sys.stderr)
        print(report.summary(), flush=True)

    if not args.json:
        print(f"watching {args.directory} every {args.interval:g} s (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        watcher.run(stop, show, once=args.once)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 2 if failed and args.once else 0


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json

    kb = _kb(settings).ready()
    results = kb.search(args.query, kind=args.kind, patient=args.patient, k=args.k, modality=args.modality,
                        date_from=args.date_from, date_to=args.date_to)
    if args.json:
        print_json([c.to_dict() for c in results])
        return 0
    if not results:
        print("no matching passages")
        return 0
    for n, c in enumerate(results, start=1):
        page = f", p. {c.page}" if c.page and "p. " not in c.section else ""
        print(f"[{n}] {c.label()}{page}  (score {c.score:.4f})")
        print(textwrap.indent(textwrap.fill(" ".join(c.quote.split()), 100), "    "))
        print(f"    {c.url or c.source}")
    return 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json

    stats = _kb(settings).stats()
    if args.json:
        print_json(stats)
        return 0
    print(f"knowledge base: {stats['location']} ({stats['mode']}), embeddings: {stats['embedding_model']}")
    for kind, entry in stats["collections"].items():
        extra = f", {entry['patients']} patients" if "patients" in entry else ""
        print(f"  {kind}s: {entry['chunks']} chunks from {entry['sources']} sources{extra}")
    print(f"  bundled corpus: {'built' if stats['bundled'] else 'not built (radconsult kb build)'}")
    return 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json

    removed = _kb(settings).delete(args.source)
    if args.json:
        print_json({"source": args.source, "removed": removed})
    elif removed:
        print(f"removed {removed} chunks of {args.source}")
    else:
        print(f"nothing stored under {args.source}", file=sys.stderr)
    return 0 if removed else 1


def cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json

    moved = _move_aside(settings) if args.rebuild else None
    report = _kb(settings).ensure_bundled(force=args.force or args.rebuild)
    if args.json:
        print_json({**(report.to_dict() if report else {"up_to_date": True}),
                    **({"moved_aside": str(moved)} if moved else {})})
    else:
        if moved:
            print(f"the old store is kept in {moved}; documents added with `radconsult kb ingest` (prior "
                  "reports, your own guidelines) are not in the new one: ingest them again", file=sys.stderr)
        print(report.summary() if report else "the bundled knowledge base is up to date")
    return 0


def _move_aside(settings: Settings) -> Path | None:
    """Rename the embedded store's directory to ``kb.damaged-<UTC time>`` (None when there is none)."""
    import os
    from datetime import UTC, datetime

    from tools.errors import StoreError

    if settings.chroma_url:
        raise StoreError("--rebuild works on the embedded store only; a Chroma server's store is repaired on "
                         "the server (or unset RADCONSULT_CHROMA_URL)")
    kb_dir = settings.kb_dir
    if not kb_dir.exists():
        return None
    target = kb_dir.with_name(f"{kb_dir.name}.damaged-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}")
    try:
        lock = kb_dir / "write.lock"
        fd = os.open(lock, os.O_RDONLY) if lock.exists() else None
        try:
            if fd is not None:
                import fcntl

                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise StoreError(f"the knowledge base in {kb_dir} is being written by another process; stop "
                                     "it (and any running `radconsult ui`) before --rebuild") from None
            os.replace(kb_dir, target)
        finally:
            if fd is not None:
                os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot move {kb_dir} aside: {exc.strerror or exc}; make the data directory writable") \
            from None
    return target
