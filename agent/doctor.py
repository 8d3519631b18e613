"""`radconsult doctor`: check this machine end to end, one line per check with what to do when it fails.

Each check is a small function of the settings that returns a :class:`Check`; none raises. The language
model is asked a short question in a worker process, so a native crash (llama.cpp's AMX path, an illegal
instruction) is reported here rather than suffered. The UI runs the same checks after its warm-up and
shows the failures at the top of the page.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from tools.errors import RadconsultError

if TYPE_CHECKING:
    from agent.llm.base import ChatBackend
    from agent.settings import Settings

Status = Literal["ok", "warn", "fail", "skip"]
GiB = 1024 ** 3
MIN_FREE_DISK = 2 * GiB  # the packaged 1.5B model joined (1.1 GB), the knowledge base and caches
WARN_FREE_DISK = 10 * GiB


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""  # what to do when it is not ok
    ms: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _timed(name: str, fn: Callable[[], Check]) -> Check:
    t0 = time.perf_counter()
    try:
        check = fn()
    except RadconsultError as exc:
        check = Check(name, "fail", str(exc), "see the message")
    except Exception as exc:  # noqa: BLE001 - a check must report, never crash the doctor
        check = Check(name, "fail", f"{type(exc).__name__}: {exc}", "a bug or a broken install: reinstall with "
                      "`pip install -e \".[all]\"`, and report it with this line")
    return Check(check.name, check.status, check.detail, check.fix, round((time.perf_counter() - t0) * 1000, 1))


# --- the machine --------------------------------------------------------------------------------------
def check_cpu() -> Check:
    from agent.llm.cpu import cpu_info

    info = cpu_info()
    mem = f"{info.memory_bytes / GiB:.1f} GiB memory" if info.memory_bytes else "memory unknown"
    feats = ", ".join(info.features) or "no AVX2"
    detail = f"{info.model}; {info.cores} cores; {mem}; {feats}"
    if "avx2" not in info.features:
        return Check("cpu", "warn", detail, "without AVX2 the embedded model is several times slower: use an "
                     "OpenAI-compatible server on a faster machine (RADCONSULT_LLM=openai:...)")
    if info.memory_bytes and info.memory_bytes < 4 * GiB:
        return Check("cpu", "warn", detail, "under 4 GiB of memory: use RADCONSULT_LLM=gguf:qwen2.5-coder-0.5b")
    return Check("cpu", "ok", detail)


def check_llm_choices(settings: Settings) -> Check:
    from agent.llm import parse_spec
    from agent.llm.cpu import auto_threads, busy_cores, cpu_info, repack_weights

    kind, _, _ = parse_spec(settings.llm)
    if kind != "gguf":
        return Check("llm threads", "skip", f"{kind}: backend threads are the server's or torch's own")
    info = cpu_info()
    busy = busy_cores()
    threads = settings.llm_threads or auto_threads()
    how = "set by RADCONSULT_LLM_THREADS" if settings.llm_threads else \
        f"auto: {info.cores} cores, {busy:.1f} busy now" if busy is not None else "auto"
    repack = repack_weights(settings.llm_repack, info)
    why = "AMX CPU: llama.cpp's AMX path crashes" if settings.llm_repack == "auto" and info.has_amx else \
        f"RADCONSULT_LLM_REPACK={settings.llm_repack}"
    detail = f"{threads} thread{'s' if threads != 1 else ''} ({how}); weight repack {'on' if repack else 'off'} ({why}); " \
             f"isolation {settings.llm_isolation}"
    if settings.llm_repack == "on" and info.has_amx:
        return Check("llm threads", "warn", detail, "weight repack is forced on on a CPU with AMX, where llama.cpp "
                     "is known to crash: unset RADCONSULT_LLM_REPACK (auto)")
    return Check("llm threads", "ok", detail)


def check_llm(settings: Settings, backend: ChatBackend | None = None) -> Check:
    """The model answers a short prompt. gguf:/hf: run in a worker process here even when the app runs them
    in-process, so a crash is reported; a running app passes its own backend."""
    from agent.llm import make_backend, parse_spec
    from tools.errors import LLMCrashedError, LLMError

    kind, target, _ = parse_spec(settings.llm)
    own = backend is None
    if backend is None:
        backend = make_backend(settings.model_copy(update={"llm_isolation": "worker"}) if kind != "openai"
                               else settings)
    messages = [{"role": "system", "content": "You are a test. Reply with one word."},
                {"role": "user", "content": "Say OK."}]
    try:
        t0 = time.perf_counter()
        try:
            res = backend.chat(messages, None, max_tokens=4)
        except LLMCrashedError as exc:
            from agent.llm.worker import WorkerBackend

            if not (isinstance(backend, WorkerBackend) and backend.repack_fallback):
                raise
            res = backend.chat(messages, None, max_tokens=4)  # the worker restarts it without weight repacking
            return Check("llm", "warn", f"{settings.llm}: crashed with weight repacking ({exc}); answered without "
                         "it", "set RADCONSULT_LLM_REPACK=off (the worker does so by itself after such a crash)")
        secs = time.perf_counter() - t0
        if not res.text.strip():
            return Check("llm", "fail", f"{settings.llm}: answered with nothing", "run `radconsult -v doctor` and "
                         "read the log; try the other packaged model")
        where = "from the server" if kind == "openai" else "in a worker process, loading included"
        return Check("llm", "ok", f"{settings.llm} answered {res.text.strip()[:20]!r} in {secs:.1f} s ({where})")
    except LLMError as exc:
        fix = ("start the server, or point RADCONSULT_LLM at one that runs" if kind == "openai" else
               "set RADCONSULT_LLM_REPACK=off, or RADCONSULT_LLM=gguf:qwen2.5-coder-0.5b; run "
               "`radconsult -v doctor` for the log")
        return Check("llm", "fail", f"{settings.llm}: {exc}", fix)
    except RadconsultError as exc:  # not installed, bad file
        return Check("llm", "fail", f"{settings.llm}: {exc}", "install the model (the message names the command) "
                     "or fix RADCONSULT_LLM")
    finally:
        if own:
            backend.close()


# --- the parts ----------------------------------------------------------------------------------------
def check_classifiers(settings: Settings) -> list[Check]:
    """Each installed bundle loads and runs one forward pass on an input of its declared shape."""
    import torch

    from agent.wiring import classifier_config
    from tools.classifiers.registry import list_models
    from tools.classifiers.runtime import load_model

    config = classifier_config(settings)
    try:
        bundles = list_models(config)
    except RadconsultError as exc:
        return [Check("classifiers", "fail", str(exc), "fix or remove the bundle it names (RADCONSULT_MODEL_DIRS)")]
    if not bundles:
        return [Check("classifiers", "warn", "no classifier bundle installed", "reinstall radconsult")]
    out = []
    for bundle in bundles:
        def one(bundle=bundle) -> Check:
            loaded = load_model(bundle, settings.device)
            h, w = bundle.input_size
            x = torch.zeros(1, bundle.input_channels, h, w, device=loaded.device)
            t0 = time.perf_counter()
            with torch.inference_mode():
                y = loaded.network(x)
            ms = (time.perf_counter() - t0) * 1000
            if y.shape[-1] != len(bundle.labels) and not (y.shape[-1] == 1 and len(bundle.labels) == 2):
                return Check(f"classifier {bundle.name}", "fail", f"the network gives {y.shape[-1]} outputs for "
                             f"{len(bundle.labels)} labels", "the bundle is inconsistent: reinstall or fix it")
            return Check(f"classifier {bundle.name}", "ok", f"{bundle.version} on {loaded.device}: forward pass "
                         f"{ms:.0f} ms ({h}x{w})")
        out.append(_timed(f"classifier {bundle.name}", one))
    return out


def check_knowledge(settings: Settings) -> Check:
    """The knowledge base opens (building the bundled corpus on first use) and answers a search."""
    from agent.services import shared_knowledge_base
    from agent.wiring import knowledge_config

    kb = shared_knowledge_base(knowledge_config(settings)).ready()
    t0 = time.perf_counter()
    hits = kb.search("follow-up of a solid lung nodule", "guideline", k=1)
    ms = (time.perf_counter() - t0) * 1000
    where = settings.chroma_url or str(settings.kb_dir)
    if not hits:
        return Check("knowledge base", "fail", f"{where}: a search found nothing", "rebuild it: "
                     "`radconsult kb build --rebuild`")
    return Check("knowledge base", "ok", f"{where}: a search answered in {ms:.0f} ms (top: {hits[0].title[:60]})")


def check_chroma_server(settings: Settings) -> Check:
    if not settings.chroma_url:
        return Check("chroma server", "skip", "embedded store (RADCONSULT_CHROMA_URL unset)")
    import httpx

    url = settings.chroma_url.rstrip("/")
    try:
        resp = httpx.get(f"{url}/api/v2/heartbeat", timeout=5.0)
    except httpx.HTTPError as exc:
        return Check("chroma server", "fail", f"{url}: not reachable ({type(exc).__name__})",
                     "start it (`chroma run --path DIR --port 8000`) or unset RADCONSULT_CHROMA_URL")
    if resp.status_code != 200:
        return Check("chroma server", "fail", f"{url}: HTTP {resp.status_code}", "is it a Chroma server?")
    return Check("chroma server", "ok", f"{url}: heartbeat answered")


def check_llm_server(settings: Settings) -> Check:
    from agent.llm import parse_spec

    kind, url, model = parse_spec(settings.llm)
    if kind != "openai":
        return Check("llm server", "skip", "embedded model (no server configured)")
    import httpx

    try:
        resp = httpx.get(f"{url.rstrip('/')}/models", timeout=5.0)
    except httpx.HTTPError as exc:
        return Check("llm server", "fail", f"{url}: not reachable ({type(exc).__name__})",
                     "start the server or correct RADCONSULT_LLM")
    if resp.status_code != 200:
        return Check("llm server", "fail", f"{url}: /models answered HTTP {resp.status_code}",
                     "is it an OpenAI-compatible server (vLLM, llama.cpp server)?")
    ids = [m.get("id") for m in (resp.json().get("data") or []) if isinstance(m, dict)]
    if model and model != "default" and ids and model not in ids:
        return Check("llm server", "warn", f"{url}: serves {', '.join(map(str, ids[:5]))}, not {model}",
                     "correct the model after # in RADCONSULT_LLM")
    return Check("llm server", "ok", f"{url}: serves {', '.join(map(str, ids[:5])) or 'a model'}")


def check_pacs(settings: Settings) -> Check:
    if not settings.pacs_url:
        return Check("pacs", "skip", "no PACS configured (RADCONSULT_PACS_URL unset)")
    from agent.wiring import pacs_config
    from tools.errors import PacsAuthError, PacsError
    from tools.pacs import PacsClient

    config = pacs_config(settings)
    try:
        with PacsClient(config) as client:
            ms = client.echo()
    except PacsAuthError as exc:
        return Check("pacs", "fail", str(exc), "check the credential in RADCONSULT_PACS_AUTH_FILE / _AUTH_ENV "
                     "and RADCONSULT_PACS_AUTH")
    except PacsError as exc:
        return Check("pacs", "fail", str(exc), "check RADCONSULT_PACS_URL (the DICOMweb root) and that the PACS "
                     "is up")
    return Check("pacs", "ok", f"{config.host}: a QIDO search answered in {ms:.0f} ms "
                 f"({settings.pacs_auth} authentication)")


# --- storage ------------------------------------------------------------------------------------------
def check_data_dir(settings: Settings) -> Check:
    d = settings.data_dir
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=d, prefix=".doctor-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return Check("data directory", "fail", f"{d}: not writable ({exc.strerror})",
                     "make it writable, or set RADCONSULT_DATA_DIR to a writable place")
    free = shutil.disk_usage(d).free
    detail = f"{d}: writable, {free / GiB:.1f} GiB free"
    if free < MIN_FREE_DISK:
        return Check("data directory", "fail", detail, "free disk space (at least 2 GiB: the model, the knowledge "
                     "base, cases and the audit log)")
    if free < WARN_FREE_DISK:
        return Check("data directory", "warn", detail, "under 10 GiB free: plan for the audit log and cases to grow")
    return Check("data directory", "ok", detail)


def check_audit(settings: Settings) -> Check:
    from agent.audit import AuditLog
    from agent.signoff import ReportStore

    key = settings.integrity_key_file
    if not key.exists():
        return Check("audit log", "ok", f"no integrity key yet at {key}: it is created with the first audit record")
    audit = AuditLog.from_settings(settings).verify()
    reports = ReportStore.from_settings(settings).verify()
    if audit.ok and reports.ok:
        return Check("audit log", "ok", f"key present; {audit.records} records and {reports.records} signed "
                     "versions verify")
    problems = [*audit.problems, *reports.problems]
    return Check("audit log", "fail", f"verification failed: {problems[0] if problems else '?'} "
                 f"({len(problems)} problem(s))", "run `radconsult audit verify` and keep its output; then "
                 "`radconsult audit reset --yes` starts a new chain")


def run_checks(settings: Settings, *, backend: ChatBackend | None = None, llm: bool = True) -> list[Check]:
    """Every check, in the order a table shows them. ``backend``: a running app's own model."""
    checks = [_timed("cpu", check_cpu), _timed("llm threads", lambda: check_llm_choices(settings))]
    checks.append(_timed("llm server", lambda: check_llm_server(settings)))
    if llm:
        checks.append(_timed("llm", lambda: check_llm(settings, backend)))
    checks += check_classifiers(settings)
    checks += [_timed("knowledge base", lambda: check_knowledge(settings)),
               _timed("chroma server", lambda: check_chroma_server(settings)),
               _timed("pacs", lambda: check_pacs(settings)),
               _timed("data directory", lambda: check_data_dir(settings)),
               _timed("audit log", lambda: check_audit(settings))]
    return checks


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == "fail"]
