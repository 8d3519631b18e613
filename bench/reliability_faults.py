"""Fault injection against real `radconsult` processes: each fault must end in a clear error (one
`radconsult: error:` line that says what to do, exit 2, no traceback) and lose or duplicate nothing,
checked afterwards with `radconsult audit verify`, `radconsult kb stats` and the case database.

    python bench/reliability_faults.py [--only readonly,disk_full,...] [--quick] [--rounds 6] [--seed 13]

Faults (``FAULTS``), and how each is injected on this machine:

- ``readonly``: the data directory read-only: a read-only bind mount in a private mount namespace
  (``unshare -m``; works as root, where chmod does not stop anything), else ``chmod a-w`` when not
  root, else (root without mount) a data directory under a regular file, which covers only the
  cannot-create half.
- ``disk_full``: a 6 MiB tmpfs as the data directory, filled to the last byte (private mount
  namespace), else a simulated ENOSPC (``os.write`` patched in the child through ``sitecustomize``).
- ``kill9_audit``: two processes appending audit records, killed with SIGKILL at random moments.
- ``kill9_signoff``: two processes drafting and signing summaries (and auditing them as the UI
  does), killed with SIGKILL at random moments.
- ``kill9_ingest``: `radconsult kb ingest` of 24 documents in batches of 8 chunks, SIGKILLed
  after it started writing; then the same ingest again.
- ``chroma_down``: a real `chroma run` server on a free loopback port, killed with SIGKILL; then
  restarted on the same directory.
- ``llm_killed``: a real `python -m llama_cpp.server` with the packaged 0.5B model, SIGKILLed while
  `radconsult ask` streams its answer.
- ``worker_segv``, ``worker_oom``, ``worker_hang``: the embedded model's worker process (packaged 0.5B) sent
  SIGSEGV, SIGKILL or SIGSTOP while `radconsult ask` streams; then the same case is asked again.
- ``worker_ui``: the worker of a running `radconsult ui` sent SIGSEGV; the page must stay up.

``run(args)`` returns one row per fault (dict); run directly, this prints the table. The slow faults
(``kill9_ingest``, ``chroma_down``, ``llm_killed``: they load the embedding model or the LLM) are
skipped with ``--quick``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEAD_LLM = "openai:http://127.0.0.1:9/v1#none"  # nothing listens on port 9
PASSWORD = "correct horse battery"
WHAT_TO_DO = re.compile(r"writable|free space|restore|start |run `radconsult|try again|RADCONSULT_|ingest them again|"
                        r"move it aside|ask again|check", re.IGNORECASE)
SLOW = ("kill9_ingest", "chroma_down", "llm_killed", "worker_segv", "worker_oom", "worker_hang", "worker_ui")
INGEST_DOCS = 24  # 6 chunks each: 144 chunks, 18 batches of 8


# --- running radconsult -----------------------------------------------------------------------------
@dataclass
class Result:
    """One finished command: its exit status and output."""

    args: list[str]
    rc: int
    out: str
    err: str

    def error_line(self) -> str:
        lines = [ln for ln in self.err.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else ""

    def clear_error(self) -> bool:
        """Exit 2, no traceback, exactly one `radconsult: error:` line, last, saying what to do."""
        line = self.error_line()
        return (self.rc == 2 and "Traceback" not in self.err and line.startswith("radconsult: error:")
                and self.err.count("radconsult: error:") == 1 and bool(WHAT_TO_DO.search(line)))

    def short(self) -> str:
        return f"`radconsult {' '.join(self.args)[:60]}` -> {self.rc}: {self.error_line()[:160]}"


def radconsult_cmd() -> list[str]:
    """The installed console script beside this interpreter, else the same entry point via -m."""
    script = Path(sys.executable).with_name("radconsult")
    return [str(script)] if script.exists() else [sys.executable, "-m", "agent.cli"]


class Box:
    """A private data directory under ``root`` and the environment to run radconsult against it."""

    def __init__(self, root: Path, data: Path | None = None, **env: str) -> None:
        self.root = Path(root)
        self.data = data or self.root / "data"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RADCONSULT_")}
        self.env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
                         "PYTHONUNBUFFERED": "1", "RADCONSULT_DATA_DIR": str(self.data),
                         "XDG_CONFIG_HOME": str(self.root / "xdg"), "RADCONSULT_LLM": DEAD_LLM,
                         "RADCONSULT_LLM_TIMEOUT_S": "20", "PYTHONPATH": str(ROOT)})
        self.env.update(env)

    def run(self, *args: str, stdin: str | None = None, timeout: float = 900,
            prefix: tuple[str, ...] = ()) -> Result:
        """`radconsult ARGS` (after ``prefix``, e.g. :func:`readonly_prefix`)."""
        proc = subprocess.run([*prefix, *radconsult_cmd(), *args], input=stdin, capture_output=True, text=True,
                              env=self.env, timeout=timeout, cwd=self.root)
        return Result(list(args), proc.returncode, proc.stdout, proc.stderr)

    def py(self, code: str, timeout: float = 120) -> Result:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=self.env,
                              timeout=timeout, cwd=self.root)
        return Result(["python", "-c", "..."], proc.returncode, proc.stdout, proc.stderr)

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen:
        return subprocess.Popen(argv, env=self.env, cwd=self.root, start_new_session=True, text=True, **kw)

    def verify(self) -> dict[str, Any]:
        res = self.run("audit", "verify", "--json")
        try:
            out = json.loads(res.out)
        except ValueError:
            out = {"ok": False, "error": res.err.strip()[-300:]}
        out["rc"] = res.rc
        return out


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the process group this bench started for ``proc`` (by its id), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)


def sample_dicom() -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm", download=False)
    if path is None:
        raise RuntimeError("pydicom's CT_small.dcm is not installed")
    return Path(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- what the data directory holds: compared before and after a fault --------------------------------
SIGN_CODE = textwrap.dedent("""
    import json, sys
    from agent.audit import AuditLog
    from agent.settings import load_settings
    from agent.signoff import Report, ReportStore
    s = load_settings(); store = ReportStore.from_settings(s); audit = AuditLog.from_settings(s)
    for case in sys.argv[1:] or {cases!r}:
        rv = store.save_draft(Report(case_id=case, sections=(("Impression", "Draft [E1]."),)), user="dr_a")
        rv = store.sign(case, rv.version, user="dr_a")
        audit.append("sign", user="dr_a", case_id=case, details={{"version": rv.version, "content_sha256": rv.content_hash}})
        print(json.dumps({{"case": case, "version": rv.version}}), flush=True)
""")

TYPED_CODE = textwrap.dedent("""
    import sys
    from tools.errors import RadconsultError
    try:
        {body}
    except RadconsultError as exc:
        print(f"radconsult: error: {{exc}}", file=sys.stderr); sys.exit(2)
""")


def sign_cases(box: Box, cases: list[str]) -> Result:
    return box.py(SIGN_CODE.format(cases=cases))


def snapshot(box: Box) -> dict[str, Any]:
    """Counts that must not shrink or double across a fault: audit records, users, summary versions and
    signatures, the secret, and the case database's checkpoints per case."""
    ver = box.verify()
    snap: dict[str, Any] = {"verify_ok": bool(ver.get("ok")), "audit_records": ver.get("audit", {}).get("records"),
                            "versions": ver.get("reports", {}).get("records"),
                            "signatures": ver.get("reports", {}).get("head", {}).get("signatures")}
    users = box.data / "users.json"
    snap["users"] = sorted(json.loads(users.read_text())["users"]) if users.exists() else []
    secret = box.data / "secret.key"
    snap["secret"] = hashlib.sha256(secret.read_bytes()).hexdigest()[:12] if secret.exists() else None
    snap["cases"] = case_checkpoints(box.data / "cases.sqlite")
    return snap


def case_checkpoints(path: Path) -> dict[str, int]:
    """Checkpoints per case id in the case database (read-only); {"integrity": ...} when damaged."""
    if not path.exists():
        return {}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            return {"integrity": check}
        return dict(con.execute("SELECT thread_id, COUNT(*) FROM checkpoints GROUP BY thread_id").fetchall())
    except sqlite3.Error as exc:
        return {"error": str(exc)}
    finally:
        con.close()


def compare(before: dict[str, Any], after: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(lost, duplicated) between two snapshots."""
    lost, dup = [], []
    for key in ("audit_records", "versions", "signatures"):
        b, a = before.get(key) or 0, after.get(key) or 0
        if a < b:
            lost.append(f"{key} {b} -> {a}")
    if set(before["users"]) - set(after["users"]):
        lost.append(f"users {before['users']} -> {after['users']}")
    if before["secret"] and before["secret"] != after["secret"]:
        lost.append("the installation secret changed")
    for case, n in before["cases"].items():
        if after["cases"].get(case, 0) < n:
            lost.append(f"case {case}: checkpoints {n} -> {after['cases'].get(case, 0)}")
    if "integrity" in after["cases"] or "error" in after["cases"]:
        lost.append(f"case database: {after['cases']}")
    return lost, dup


def prepare(box: Box) -> list[Result]:
    """A used installation: a user, the secret, a signed summary (audited), a case with one turn."""
    steps = [box.run("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n"),
             box.run("inspect", str(sample_dicom())),
             sign_cases(box, ["case-signed"]),
             # a question the rules leave to the model (a BI-RADS meaning is answered without it): with the
             # dead LLM, a failed turn, stored
             box.run("ask", "How are pulmonary nodules measured on CT?", "--case", "c1")]
    bad = [r.short() for r in steps[:3] if r.rc != 0]
    if bad or steps[3].rc != 2:
        raise RuntimeError("preparing the data directory failed: " + "; ".join(bad + [steps[3].short()]))
    return steps


# --- rows -------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One fault's outcome. ``survived``: every expected error was clear, nothing lost or duplicated,
    every command that should work did, and `radconsult audit verify` passed afterwards."""

    fault: str
    method: str
    commands: int = 0
    expected_errors: int = 0
    clear_errors: int = 0
    unexpected: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    verify_ok: bool = False
    seconds: float = 0.0
    notes: str = ""
    results: list[str] = field(default_factory=list)  # every command, as `cmd -> exit: last stderr line`

    @property
    def survived(self) -> bool:
        return (self.clear_errors == self.expected_errors and not self.unexpected and not self.lost
                and not self.duplicated and self.verify_ok)

    def check(self, res: Result, expect_error: bool | None) -> None:
        """Count one command. ``expect_error``: True, it must fail clearly; False, it must succeed;
        None, either (a write that may still fit in a full disk's last page, say)."""
        self.commands += 1
        self.results.append(res.short())
        if expect_error is None:
            if res.rc != 0:
                expect_error = True
            else:
                return
        if expect_error:
            self.expected_errors += 1
            if res.clear_error():
                self.clear_errors += 1
            else:
                self.unexpected.append("unclear error: " + res.short() + (" [traceback]" if "Traceback" in res.err else ""))
        elif res.rc != 0:
            self.unexpected.append("failed: " + res.short())

    def to_dict(self) -> dict[str, Any]:
        return {"suite": "faults", **asdict(self), "survived": self.survived}


# --- mount namespaces -------------------------------------------------------------------------------
def can_mount() -> bool:
    """True when this process may mount inside a private mount namespace (root with CAP_SYS_ADMIN)."""
    if not shutil.which("unshare") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory() as d:
        probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                f"mount -t tmpfs -o size=64k tmpfs {d}"], capture_output=True)
        return probe.returncode == 0


def readonly_prefix(path: Path) -> tuple[str, ...]:
    """A command prefix that runs the command in its own mount namespace where ``path`` is a read-only
    bind mount of itself: read-only even for root, and gone when the command ends (needs can_mount)."""
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return ("unshare", "-m", "--propagation", "private", "sh", "-c", script, str(path))


def run_inner(fault: str, root: Path, timeout: float = 900) -> dict[str, Any]:
    """Run ``fault``'s body in a private mount namespace (its mounts vanish with it) and return its row."""
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, str(Path(__file__).resolve()),
                           "--inner", fault, "--root", str(root)], capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return Row(fault, "mount namespace", unexpected=[f"inner run failed ({proc.returncode}): {proc.stderr[-800:]}"]).to_dict()


def sh(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True)


# --- faults -----------------------------------------------------------------------------------------
READONLY_CHECKS: list[tuple[list[str], bool]] = [
    (["audit", "verify"], False), (["users", "list"], False), (["config"], False),
    (["users", "add", "bob", "--password-stdin"], True), (["users", "remove", "alice"], True),
    (["ask", "What does BI-RADS 4 mean?", "--case", "c1"], True), (["kb", "stats"], True),
    (["audit", "reset", "--yes"], True),
]


def _readonly_body(root: Path, make_ro: Callable[[Path], None], undo: Callable[[Path], None], method: str) -> Row:
    t0 = time.perf_counter()
    row = Row("readonly", method)
    box = Box(root)
    prepare(box)
    doc = root / "note.md"
    doc.write_text("---\ntitle: Note\nkind: guideline\n---\n# Note\n\nA short guideline note.\n")
    before = snapshot(box)
    empty = Box(root / "fresh")
    empty.data.mkdir(parents=True)
    make_ro(box.data)
    make_ro(empty.data)
    try:
        for args, expect_error in READONLY_CHECKS:
            row.check(box.run(*args, stdin=PASSWORD + "\n" if "--password-stdin" in args else None), expect_error)
        row.check(box.run("inspect", str(sample_dicom())), False)  # the secret exists: reading is enough
        row.check(box.run("deid", str(sample_dicom()), str(root / "out")), False)  # output elsewhere
        row.check(box.run("kb", "ingest", str(doc), "--no-progress"), True)
        # a read-only data directory that was never used: nothing can be created
        row.check(empty.run("inspect", str(sample_dicom())), True)
        row.check(empty.run("audit", "verify"), False)
        row.check(empty.run("users", "add", "bob", "--password-stdin", stdin=PASSWORD + "\n"), True)
    finally:
        undo(box.data)
        undo(empty.data)
    after = snapshot(box)
    row.lost, row.duplicated = compare(before, after)
    row.verify_ok = after["verify_ok"] and after["audit_records"] == before["audit_records"]
    row.seconds = time.perf_counter() - t0
    return row


def _bind_ro(path: Path) -> None:
    sh("mount", "--bind", str(path), str(path))
    sh("mount", "-o", "remount,bind,ro", str(path))


def _umount(path: Path) -> None:
    sh("umount", str(path))


def _chmod_ro(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if p.is_dir():
            p.chmod(0o555)


def _chmod_rw(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)


def fault_readonly(root: Path) -> dict[str, Any]:
    if can_mount():
        return run_inner("readonly", root)
    if os.geteuid() != 0:
        return _readonly_body(root, _chmod_ro, _chmod_rw, "chmod a-w (not root)").to_dict()
    # root without mount: chmod stops nothing; a data directory under a regular file cannot be created
    t0 = time.perf_counter()
    row = Row("readonly", "simulated: data directory under a regular file (root without mount)")
    blocker = root / "not-a-dir"
    blocker.write_text("x")
    box = Box(root, data=blocker / "data")
    row.check(box.run("inspect", str(sample_dicom())), True)
    row.check(box.run("users", "add", "bob", "--password-stdin", stdin=PASSWORD + "\n"), True)
    row.check(box.run("audit", "verify"), False)
    row.verify_ok = True
    row.seconds = time.perf_counter() - t0
    return row.to_dict()


def _fill(directory: Path) -> Path:
    """Write a new filler file until the file system is full, to the last byte; returns it."""
    n = 0
    while (directory / f"filler-{n}.bin").exists():
        n += 1
    filler = directory / f"filler-{n}.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    if os.write(fd, b"\0" * size) < size:
                        break
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


ENOSPC_HOOK = textwrap.dedent("""
    # A full disk under RADCONSULT_FAULT_ENOSPC_ROOT, for Python's own writes: os.write, and files opened
    # for writing through open()/io.open()/os.fdopen(). SQLite's writes (C code) are not affected.
    import builtins, errno, io, os
    _root = os.environ.get("RADCONSULT_FAULT_ENOSPC_ROOT")

    def _under(target):
        try:
            path = os.readlink(f"/proc/self/fd/{target}") if isinstance(target, int) else os.path.abspath(target)
        except (OSError, TypeError):
            return False
        return bool(_root) and str(path).startswith(_root)

    def _nospace(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device (simulated)")

    class _Full:
        def __init__(self, fh):
            self._fh = fh
        write = writelines = _nospace
        def __getattr__(self, name):
            return getattr(self._fh, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self._fh.close()
        def __iter__(self):
            return iter(self._fh)

    def _wrap(opener):
        def _open(file, mode="r", *args, **kwargs):
            fh = opener(file, mode, *args, **kwargs)
            writing = any(c in mode for c in "wax+")
            return _Full(fh) if writing and _under(file) else fh
        return _open

    if _root:
        _write = os.write
        os.write = lambda fd, data: _nospace() if _under(fd) else _write(fd, data)
        builtins.open = io.open = _wrap(io.open)
        os.fdopen = _wrap(os.fdopen)
""")


def _disk_full_body(root: Path, method: str, fill: Callable[[Box], Callable[[], None]]) -> Row:
    t0 = time.perf_counter()
    row = Row("disk_full", method)
    box = Box(root)
    prepare(box)
    before = snapshot(box)
    frees: list[Callable[[], None]] = []

    def full(res_of: Callable[[], Result]) -> Result:
        frees.append(fill(box))  # top up first: a failed write may have freed pages (SQLite's WAL, say)
        return res_of()

    try:
        row.check(full(lambda: box.run("users", "add", "bob", "--password-stdin", stdin=PASSWORD + "\n")), True)
        row.check(full(lambda: box.run("users", "remove", "alice")), True)
        row.check(full(lambda: box.run("ask", "What does BI-RADS 4 mean?", "--case", "c1")), True)
        row.check(full(lambda: box.py(TYPED_CODE.format(
            body=SIGN_CODE.format(cases=["case-full"]).replace("\n", "\n    ")))), True)
        appended = full(lambda: box.py(TYPED_CODE.format(body=(
            "from agent.audit import AuditLog; from agent.settings import load_settings; "
            "AuditLog.from_settings(load_settings()).append('login', user='dr_a')"))))
        row.check(appended, None)  # a short record may still fit in the log's last page: stored, or refused
        extra = 1 if appended.rc == 0 else 0
        row.check(full(lambda: box.run("inspect", str(sample_dicom()))), False)
        row.check(full(lambda: box.run("audit", "verify")), False)
    finally:
        for free in reversed(frees):
            free()
    after = snapshot(box)
    row.lost, row.duplicated = compare(before, after)
    # space again: writing works and the chain goes on
    row.check(box.run("users", "add", "bob", "--password-stdin", stdin=PASSWORD + "\n"), False)
    row.check(sign_cases(box, ["case-after"]), False)
    final = snapshot(box)
    row.verify_ok = (after["verify_ok"] and after["audit_records"] == before["audit_records"] + extra
                     and final["verify_ok"] and final["audit_records"] == before["audit_records"] + extra + 2)
    row.notes = ("the audit record fitted in the log's last page and was stored (the anchor update failed and "
                 "verify notes the record past the anchor)" if extra else "")
    row.seconds = time.perf_counter() - t0
    return row


def fault_disk_full(root: Path) -> dict[str, Any]:
    if can_mount():
        return run_inner("disk_full", root)

    def simulate(box: Box) -> Callable[[], None]:
        if "RADCONSULT_FAULT_ENOSPC_ROOT" in box.env:
            return lambda: None
        hook = box.root / "enospc-hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(ENOSPC_HOOK)
        old = dict(box.env)
        box.env["PYTHONPATH"] = f"{hook}{os.pathsep}{box.env['PYTHONPATH']}"
        box.env["RADCONSULT_FAULT_ENOSPC_ROOT"] = str(box.data)

        def free() -> None:
            box.env.clear()
            box.env.update(old)
        return free

    return _disk_full_body(root, "simulated ENOSPC (Python writes patched in the child via sitecustomize; "
                                 "SQLite's own writes are not affected)", simulate).to_dict()


AUDIT_WRITER = textwrap.dedent("""
    import sys
    from agent.audit import AuditLog
    from agent.settings import load_settings
    log = AuditLog.from_settings(load_settings()); w = sys.argv[1]
    print("ready", flush=True)
    for n in range(100000):
        rec = log.append("search", user="dr_a", case_id="k", details={"w": w, "n": n})
        print(f"ACK {w} {n} {rec['seq']}", flush=True)
""")

SIGN_WRITER = textwrap.dedent("""
    import json, sys
    from agent.audit import AuditLog
    from agent.settings import load_settings
    from agent.signoff import Report, ReportStore
    s = load_settings(); store = ReportStore.from_settings(s); audit = AuditLog.from_settings(s); w = sys.argv[1]
    print("ready", flush=True)
    for n in range(100000):
        case = f"{w}-{n}"
        rv = store.save_draft(Report(case_id=case, sections=(("Impression", f"Draft {n} [E1]."),)), user="dr_a")
        rv = store.sign(case, rv.version, user="dr_a")
        audit.append("sign", user="dr_a", case_id=case, details={"version": rv.version})
        print("ACK " + json.dumps({"case": case, "version": rv.version}), flush=True)
""")


def _kill_rounds(box: Box, code: str, rounds: int, rng: random.Random, writers: int = 2) -> list[str]:
    """Start ``writers`` children running ``code``; SIGKILL them at a random moment once they are
    writing; ``rounds`` times. Returns every acknowledgement line they printed."""
    acks: list[str] = []
    for r in range(rounds):
        procs = [box.popen([sys.executable, "-c", code, f"r{r}w{w}"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL) for w in range(writers)]
        for p in procs:
            assert p.stdout is not None
            p.stdout.readline()  # "ready"
        time.sleep(rng.uniform(0.2, 1.5))
        for p in procs:
            kill_group(p)
        for p in procs:
            assert p.stdout is not None
            acks += [ln.strip() for ln in p.stdout.read().splitlines() if ln.startswith("ACK ")]
    return acks


def fault_kill9_audit(root: Path, rounds: int = 6, seed: int = 13) -> dict[str, Any]:
    t0 = time.perf_counter()
    row = Row("kill9_audit", f"SIGKILL of 2 appending processes at random moments, {rounds} rounds")
    box = Box(root)
    acks = _kill_rounds(box, AUDIT_WRITER, rounds, random.Random(seed))
    from agent.audit import AuditLog
    from agent.settings import Settings

    log = AuditLog.from_settings(Settings(data_dir=box.data))
    stored = Counter((str(r["details"].get("w")), int(r["details"].get("n", -1))) for r in log.records())
    acked = {(a.split()[1], int(a.split()[2])) for a in acks}
    row.lost = [f"acknowledged record {w}/{n} missing" for (w, n) in sorted(acked) if (w, n) not in stored][:5]
    row.duplicated = [f"record {k} stored {c} times" for k, c in stored.items() if c > 1][:5]
    after = box.verify()
    row.check(box.run("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n"), False)  # appends again
    final = box.verify()
    row.verify_ok = bool(after.get("ok") and final.get("ok"))
    row.commands += rounds * 2
    row.notes = (f"{len(acked)} records acknowledged, {sum(stored.values())} stored "
                 f"(a record written just before the kill is stored unacknowledged)")
    row.seconds = time.perf_counter() - t0
    return row.to_dict()


def fault_kill9_signoff(root: Path, rounds: int = 6, seed: int = 13) -> dict[str, Any]:
    t0 = time.perf_counter()
    row = Row("kill9_signoff", f"SIGKILL of 2 signing processes at random moments, {rounds} rounds")
    box = Box(root)
    acks = [json.loads(a[4:]) for a in _kill_rounds(box, SIGN_WRITER, rounds, random.Random(seed + 1))]
    from agent.audit import AuditLog
    from agent.settings import Settings
    from agent.signoff import ReportStore

    settings = Settings(data_dir=box.data)
    store = ReportStore.from_settings(settings)
    for a in acks:
        try:
            if not store.load(a["case"], a["version"]).is_signed:
                row.lost.append(f"{a['case']} v{a['version']} acknowledged as signed, stored as a draft")
        except Exception as exc:  # noqa: BLE001 - any failure to load an acknowledged signature is a loss
            row.lost.append(f"{a['case']} v{a['version']}: {exc}")
    ledger = Counter((r["case_id"], r["version"]) for r in store.ledger.records())
    signs = Counter((r["case_id"], r["details"].get("version")) for r in AuditLog.from_settings(settings).records()
                    if r["action"] == "sign")
    row.duplicated = ([f"ledger entry {k} x{c}" for k, c in ledger.items() if c > 1]
                      + [f"audit sign record {k} x{c}" for k, c in signs.items() if c > 1])[:5]
    before_fix = box.verify()
    interrupted = sum("interrupted sign-off" in w for w in before_fix.get("reports", {}).get("warnings", []))
    row.check(sign_cases(box, ["after-kill"]), False)  # writing works again
    final = box.verify()
    row.verify_ok = bool(before_fix.get("ok") and final.get("ok"))
    row.commands += rounds * 2
    signed = sum(1 for r in store.ledger.records())
    row.notes = (f"{len(acks)} sign-offs acknowledged, {signed} in the ledger; {interrupted} interrupted between "
                 "file and ledger (verify notes them; recorded by the next change to the case)")
    row.seconds = time.perf_counter() - t0
    return row.to_dict()


def _docs(directory: Path, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        paras = "\n\n".join(f"## Step {j}\n\n" + " ".join(
            f"Section {j} of guideline {i}, sentence {k}: a solid nodule of {i % 9 + 4} mm at follow-up step {j} "
            f"is handled as written here (item {i * 100 + j * 10 + k})." for k in range(4)) for j in range(6))
        (directory / f"g{i:03d}.md").write_text(f"---\ntitle: Guideline {i}\nkind: guideline\n---\n"
                                                f"# Guideline {i}\n\n{paras}\n")
    return directory


def _kb_counts(box: Box) -> tuple[Result, dict[str, Any]]:
    res = box.run("kb", "stats", "--json")
    try:
        return res, json.loads(res.out)
    except ValueError:
        return res, {}


def fault_kill9_ingest(root: Path, seed: int = 13) -> dict[str, Any]:
    t0 = time.perf_counter()
    row = Row("kill9_ingest", f"SIGKILL of `radconsult kb ingest` ({INGEST_DOCS} documents, batches of 8 chunks) "
              "once its first batch is written")
    box = Box(root, RADCONSULT_KB_BATCH_SIZE="8")
    docs = _docs(root / "docs", INGEST_DOCS)
    rng = random.Random(seed)
    proc = box.popen([*radconsult_cmd(), "-v", "kb", "ingest", str(docs), "--kind", "guideline", "--no-progress"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    for line in proc.stderr:  # INFO "wrote N new chunks from M sources" after each batch
        if "wrote" in line and "new chunks" in line:
            break
    time.sleep(rng.uniform(0.0, 2.0))
    finished_first = proc.poll() is not None
    kill_group(proc)
    row.commands += 1
    res, mid = _kb_counts(box)
    row.check(res, False)
    again = box.run("kb", "ingest", str(docs), "--kind", "guideline", "--no-progress", "--json", timeout=1800)
    row.check(again, False)
    res, end = _kb_counts(box)
    row.check(res, False)
    # searches last: `kb search` also builds the bundled corpus, which the counts above must not include
    row.check(box.run("kb", "search", "guideline 7 follow-up step 3", "--k", "3"), False)
    try:
        report = json.loads(again.out)
        expected = int(report["chunks_added"]) + int(report["chunks_kept"])
    except (ValueError, KeyError, TypeError):
        expected = -1
    got = end.get("collections", {}).get("guideline", {})
    if got.get("sources") != INGEST_DOCS:
        row.lost.append(f"sources {got.get('sources')} of {INGEST_DOCS}")
    if expected >= 0 and got.get("chunks", 0) > expected:
        row.duplicated.append(f"{got.get('chunks')} chunks stored for {expected} expected")
    if expected >= 0 and got.get("chunks", 0) < expected:
        row.lost.append(f"{got.get('chunks')} chunks stored for {expected} expected")
    row.verify_ok = box.verify().get("ok", False)
    mid_chunks = mid.get("collections", {}).get("guideline", {}).get("chunks")
    row.notes = (f"killed with {mid_chunks} chunks written" + (" (it had already finished)" if finished_first else "")
                 + f"; after the rerun {got.get('chunks')} chunks from {got.get('sources')} sources, "
                 f"{expected} expected")
    row.seconds = time.perf_counter() - t0
    return row.to_dict()


def _start_chroma(path: Path, port: int) -> subprocess.Popen:
    chroma = Path(sys.executable).with_name("chroma")
    proc = subprocess.Popen([str(chroma if chroma.exists() else "chroma"), "run", "--path", str(path), "--host",
                             "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chroma run exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2).status_code == 200:
                return proc
        time.sleep(0.3)
    kill_group(proc)
    raise RuntimeError("chroma run did not answer within 120 s")


def fault_chroma_down(root: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    row = Row("chroma_down", "SIGKILL of a real `chroma run` server, then a restart on the same directory")
    port = free_port()
    box = Box(root, RADCONSULT_CHROMA_URL=f"http://127.0.0.1:{port}")
    docs = _docs(root / "docs", 6)
    server = _start_chroma(root / "chroma", port)
    try:
        row.check(box.run("kb", "ingest", str(docs), "--kind", "guideline", "--no-progress"), False)
        res, before = _kb_counts(box)
        row.check(res, False)
        kill_group(server)
        row.check(box.run("kb", "stats"), True)
        row.check(box.run("kb", "search", "solid nodule"), True)
        row.check(box.run("kb", "ingest", str(docs), "--kind", "guideline", "--no-progress"), True)
        server = _start_chroma(root / "chroma", port)
        res, after = _kb_counts(box)
        row.check(res, False)
        row.check(box.run("kb", "search", "solid nodule", "--k", "2"), False)
    finally:
        kill_group(server)
    b, a = before.get("collections", {}), after.get("collections", {})
    if a != b:
        (row.lost if (a.get("guideline", {}).get("chunks", 0) < b.get("guideline", {}).get("chunks", 0))
         else row.duplicated).append(f"{b} -> {a}")
    row.verify_ok = box.verify().get("ok", False)
    row.notes = f"{b.get('guideline', {}).get('chunks')} chunks before the kill, {a.get('guideline', {}).get('chunks')} after the restart"
    row.seconds = time.perf_counter() - t0
    return row.to_dict()


def _start_llm_server(model: Path, port: int) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "agent.llm.serve", "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "8192", "--model_alias", "qwen"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc
        time.sleep(0.5)
    kill_group(proc)
    raise RuntimeError("llama_cpp.server did not start within 240 s")


def fault_llm_killed(root: Path, model: Path | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    row = Row("llm_killed", "SIGKILL of a real `python -m llama_cpp.server` (packaged 0.5B) while the answer streams")
    if model is None:
        from agent.llm import packaged

        model = packaged.resolve("qwen2.5-coder-0.5b", Path(tempfile.gettempdir()) / "radconsult-faults-llm")
    port = free_port()
    box = Box(root, RADCONSULT_LLM=f"openai:http://127.0.0.1:{port}/v1#qwen", RADCONSULT_LLM_TIMEOUT_S="900",
              RADCONSULT_LLM_MAX_TOKENS="96")
    server = _start_llm_server(model, port)
    try:
        first = box.run("ask", "What does BI-RADS 3 mean?", "--case", "c1", timeout=1800)
        row.check(first, None)  # an earlier turn to keep: answered, or (a slow machine) a clear timeout
        before = snapshot(box)
        # a question the model answers in its own words (a BI-RADS or Fleischner answer is rendered from the
        # calculator, so the server is no longer needed once it streams)
        proc = box.popen([*radconsult_cmd(), "ask", "How should pulmonary nodules be measured on CT? Explain in "
                                                    "detail.", "--case", "c1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        deadline, streamed = time.time() + 600, ""
        while time.time() < deadline and proc.poll() is None:
            with contextlib.suppress(TypeError):
                streamed += proc.stdout.read() or ""
            if streamed.strip():
                break
            time.sleep(0.05)
        killed_while_streaming = proc.poll() is None and bool(streamed.strip())
        kill_group(server)
        out, err = proc.communicate(timeout=300)
        second = Result(["ask", "... --case c1"], proc.returncode, streamed + (out or ""), err)
        row.check(second, True)
    finally:
        kill_group(server)
    after = snapshot(box)
    row.lost, row.duplicated = compare(before, after)
    n_before, n_after = before["cases"].get("c1", 0), after["cases"].get("c1", 0)
    from agent.audit import AuditLog
    from agent.settings import Settings

    answers = [r for r in AuditLog.from_settings(Settings(data_dir=box.data)).records() if r["action"] == "answer"]
    if len(answers) != 2:
        row.duplicated.append(f"{len(answers)} answer records for 2 questions")
    row.verify_ok = after["verify_ok"]
    row.notes = (("killed while the answer streamed" if killed_while_streaming else "killed before any text streamed")
                 + f"; case c1 checkpoints {n_before} -> {n_after}; the error: {second.error_line()[:120]}")
    row.seconds = time.perf_counter() - t0
    return row.to_dict()


# --- the embedded model's worker process -------------------------------------------------------------
def runner_children(pid: int) -> list[int]:
    """Model-runner processes (``python -m agent.llm.runner``) whose parent is ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and "agent.llm.runner" in cmdline:
            out.append(int(entry.name))
    return out


WORKER_SIGNALS = {"worker_segv": (signal.SIGSEGV, "stopped unexpectedly"),
                  "worker_oom": (signal.SIGKILL, "killed by the system"),
                  "worker_hang": (signal.SIGSTOP, "stopped responding")}


def fault_worker(root: Path, fault: str = "worker_segv", model: Path | None = None) -> dict[str, Any]:
    """`radconsult ask` with the embedded model (packaged 0.5B, worker process): the worker is sent SIGSEGV,
    SIGKILL (what the out-of-memory killer sends) or SIGSTOP (a hang) while the answer streams. The turn must
    end with a clear error, the case keep its earlier turn, and the next question on the case be answered."""
    sig, says = WORKER_SIGNALS[fault]
    t0 = time.perf_counter()
    row = Row(fault, f"{signal.Signals(sig).name} to the model's worker process while `radconsult ask` streams")
    if model is None:
        from agent.llm import packaged

        model = packaged.resolve("qwen2.5-coder-0.5b", Path(tempfile.gettempdir()) / "radconsult-faults-llm")
    box = Box(root, RADCONSULT_LLM=f"gguf:{model}", RADCONSULT_LLM_TIMEOUT_S="900", RADCONSULT_LLM_MAX_TOKENS="96")
    first = box.run("ask", "What does BI-RADS 3 mean?", "--case", "c1", timeout=1800)
    row.check(first, False)
    before = snapshot(box)
    # a hang is noticed after RADCONSULT_LLM_STALL_S without a token or forward pass: short for this ask only
    box.env["RADCONSULT_LLM_STALL_S"] = "8"
    proc = box.popen([*radconsult_cmd(), "ask", "How should pulmonary nodules be measured on CT? Explain in detail.",
                      "--case", "c1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    deadline, streamed, struck = time.time() + 900, "", False
    while time.time() < deadline and proc.poll() is None:
        with contextlib.suppress(TypeError):
            streamed += proc.stdout.read() or ""
        runners = runner_children(proc.pid)
        if runners and streamed.strip():  # the answer has started to stream: strike the model's process
            for pid in runners:
                os.kill(pid, sig)
            struck = True
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=600)
    del box.env["RADCONSULT_LLM_STALL_S"]
    second = Result(["ask", "... --case c1 (worker struck)"], proc.returncode, streamed + (out or ""), err)
    row.check(second, True)
    if says not in err:
        row.unexpected.append(f"the error does not say '{says}': {second.error_line()[:160]}")
    third = box.run("ask", "How should pulmonary nodules be measured on CT? Explain in detail.", "--case", "c1",
                    timeout=1800)
    row.check(third, False)  # the case goes on, with a new worker
    after = snapshot(box)
    row.lost, row.duplicated = compare(before, after)
    row.verify_ok = after["verify_ok"]
    row.notes = (("struck while the answer streamed" if struck else "the answer never streamed: not struck")
                 + f"; the error: {second.error_line()[:120]}")
    if not struck:
        row.unexpected.append("the worker was never struck")
    row.seconds = time.perf_counter() - t0
    return row.to_dict()


def fault_worker_ui(root: Path, model: Path | None = None) -> dict[str, Any]:
    """`radconsult ui` with the embedded model: its worker is SIGSEGVed once warm. The UI process must stay
    up and keep serving the page, and a new worker must replace the old one (restarted in the background)."""
    import httpx

    t0 = time.perf_counter()
    row = Row("worker_ui", "SIGSEGV to the model's worker process of a running `radconsult ui`")
    if model is None:
        from agent.llm import packaged

        model = packaged.resolve("qwen2.5-coder-0.5b", Path(tempfile.gettempdir()) / "radconsult-faults-llm")
    port = free_port()
    box = Box(root, RADCONSULT_LLM=f"gguf:{model}", RADCONSULT_LLM_TIMEOUT_S="900")
    ui = box.popen([*radconsult_cmd(), "ui", "--port", str(port)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    try:
        deadline, old = time.time() + 600, []
        while time.time() < deadline and ui.poll() is None and not old:
            old = runner_children(ui.pid)
            time.sleep(0.5)
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        row.commands += 1
        if not old or page.status_code != 200:
            row.unexpected.append(f"the UI did not come up with a worker (page {page.status_code}, workers {old})")
        for pid in old:
            os.kill(pid, signal.SIGSEGV)
        # nothing asks until the next question: the worker is restarted when the crash is noticed, by the
        # start-up checks' question or the next turn; the page must be served meanwhile
        time.sleep(3)
        alive = ui.poll() is None
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30) if alive else None
        row.commands += 1
        if not alive or page is None or page.status_code != 200:
            row.unexpected.append(f"the UI went down with its worker (exit {ui.poll()})")
        row.verify_ok = box.verify().get("ok", False)
        row.notes = f"worker {old} struck; UI {'up' if alive else 'DOWN'}"
    finally:
        kill_group(ui, signal.SIGTERM)
        kill_group(ui)
    row.seconds = time.perf_counter() - t0
    return row.to_dict()


FAULTS: dict[str, Callable[..., dict[str, Any]]] = {
    "readonly": fault_readonly, "disk_full": fault_disk_full, "kill9_audit": fault_kill9_audit,
    "kill9_signoff": fault_kill9_signoff, "kill9_ingest": fault_kill9_ingest, "chroma_down": fault_chroma_down,
    "llm_killed": fault_llm_killed,
    **{name: (lambda root, name=name, **kw: fault_worker(root, name, **kw)) for name in WORKER_SIGNALS},
    "worker_ui": fault_worker_ui,
}


def _inner(fault: str, root: Path) -> dict[str, Any]:
    """The body of a fault that needs mounts, run inside a private mount namespace (see run_inner)."""
    if fault == "readonly":
        return _readonly_body(root, _bind_ro, _umount, "read-only bind mount (private mount namespace, as root)").to_dict()
    if fault == "disk_full":
        data = root / "data"
        data.mkdir(parents=True, exist_ok=True)
        sh("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(data))

        def fill(box: Box) -> Callable[[], None]:
            filler = _fill(box.data)
            return lambda: filler.unlink()

        try:
            return _disk_full_body(root, "6 MiB tmpfs filled to the last byte (private mount namespace)", fill).to_dict()
        finally:
            subprocess.run(["umount", str(data)], capture_output=True)
    raise SystemExit(f"no inner body for {fault}")


@contextlib.contextmanager
def workdir(keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="radconsult-faults-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the selected faults (``args.only``: comma-separated names; ``args.quick``: skip the slow ones)
    and return one row per fault."""
    names = [n.strip() for n in (getattr(args, "only", None) or ",".join(FAULTS)).split(",") if n.strip()]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise SystemExit(f"unknown fault(s) {unknown}; known: {', '.join(FAULTS)}")
    if getattr(args, "quick", False):
        names = [n for n in names if n not in SLOW]
    rows = []
    for name in names:
        with workdir(getattr(args, "keep", False)) as root:
            kwargs: dict[str, Any] = {}
            if name in ("kill9_audit", "kill9_signoff"):
                kwargs = {"rounds": getattr(args, "rounds", 6), "seed": getattr(args, "seed", 13)}
            elif name == "kill9_ingest":
                kwargs = {"seed": getattr(args, "seed", 13)}
            t0 = time.perf_counter()
            try:
                row = FAULTS[name](root, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a fault run that breaks is a row, not a crash
                row = Row(name, "-", unexpected=[f"{type(exc).__name__}: {exc}"]).to_dict()
                row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            print(f"  {name}: {'survived' if row['survived'] else 'FAILED'} ({row['seconds']:.0f} s)", file=sys.stderr)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = "| fault | injected by | commands | clear errors / expected | lost | duplicated | audit verify | survived | s |"
    lines = [head, "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
    for r in rows:
        lines.append(f"| {r['fault']} | {r['method']} | {r['commands']} | {r['clear_errors']} / {r['expected_errors']} "
                     f"| {len(r['lost'])} | {len(r['duplicated'])} | {'OK' if r['verify_ok'] else 'FAILED'} "
                     f"| {'yes' if r['survived'] else 'NO'} | {r['seconds']:.0f} |")
    survived = sum(r["survived"] for r in rows)
    lines.append(f"\nfaults tried: {len(rows)}, survived: {survived}")
    for r in rows:
        for what in ("unexpected", "lost", "duplicated"):
            for item in r[what]:
                lines.append(f"- {r['fault']} {what}: {item}")
        if r.get("notes"):
            lines.append(f"- {r['fault']}: {r['notes']}")
    return "\n".join(lines)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--only", default=None, help=f"comma-separated faults (default all: {', '.join(FAULTS)})")
    ap.add_argument("--quick", action="store_true", help=f"skip the slow faults ({', '.join(SLOW)})")
    ap.add_argument("--rounds", type=int, default=6, help="kill rounds for kill9_audit and kill9_signoff")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--keep", action="store_true", help="keep the work directories (printed) for inspection")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    ap.add_argument("--inner", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:
        print(json.dumps(_inner(args.inner, Path(args.root))))
        return 0
    rows = run(args)
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
    return 0 if all(r["survived"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
