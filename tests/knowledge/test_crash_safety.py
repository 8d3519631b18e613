"""An ingest killed with SIGKILL mid-way leaves a store that opens and answers from its last committed
state (the killed run's chunks stay invisible); re-running it finishes the job with every chunk
exactly once. The subprocess also runs with sockets disabled,
which shows that ingestion (model loading included) never touches the network."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.settings import Settings
from agent.wiring import knowledge_config
from knowledge.ingest import make_chunks, source_name
from knowledge.loaders import load_file
from knowledge.store import KnowledgeStore
from tests.conftest import REPO_ROOT, shared_file

OFFLINE_CLI = (
    "import socket, sys\n"
    "def _no_network(*a, **k):\n"
    "    raise OSError('network disabled by the test')\n"
    "socket.socket.connect = _no_network\n"
    "socket.create_connection = _no_network\n"
    "from agent.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _split_sections(text: str, folder: Path, limit: int = 8_000) -> list[Path]:
    """Small real documents: the first sections of an NCI PDQ summary, one file each."""
    parts = [p for p in text.split("\n## ") if p.strip()][1:]
    folder.mkdir()
    paths, total = [], 0
    for n, part in enumerate(parts):
        body = part[:3000]
        path = folder / f"part{n:02d}.md"
        path.write_text(f"# PDQ part {n}\n\n## {body}\n", encoding="utf-8")
        paths.append(path)
        total += len(body)
        if total > limit:
            break
    return paths


def _run(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", OFFLINE_CLI, *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_ingest_then_resume(tmp_path, embedder):
    text = shared_file("guidelines/nci_pdq/types-lung-hp-lung-screening-pdq.md").read_text(encoding="utf-8")
    files = _split_sections(text, tmp_path / "docs")
    settings = Settings(data_dir=tmp_path / "data")
    env = {**os.environ, "RADCONSULT_DATA_DIR": str(settings.data_dir), "RADCONSULT_KB_BATCH_SIZE": "4",
           "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": ""}
    first = _run(["kb", "ingest", str(files[0]), "--kind", "guideline", "--no-progress"], env)
    assert first.wait(timeout=300) == 0  # one file committed before the run that is killed
    args = ["-v", "kb", "ingest", *map(str, files), "--kind", "guideline", "--no-progress"]

    proc = _run(args, env)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # kill as soon as the first batch is in the store
        if "wrote" in line and "new chunks" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    config = knowledge_config(settings)  # the store the CLI wrote, seen through the agent's wiring
    store = KnowledgeStore(config, embedder).open()  # the store still opens and answers
    partial = {r["id"] for r in store.iter_all("guideline", include=())}
    expected: set[str] = set()
    for path in files:
        expected |= {c.id for c in make_chunks(load_file(path, config, "guideline"),
                                               source_name(path, "guideline"))}
    committed = {c.id for c in make_chunks(load_file(files[0], config, "guideline"),
                                           source_name(files[0], "guideline"))}
    assert committed < partial < expected
    from knowledge.retrieve import hybrid_search

    hits = hybrid_search(store, "lung cancer screening", k=5)
    assert hits and {h.chunk_id for h in hits} <= committed  # readers see the last committed state

    proc = _run(args, env)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert f"{len(expected)} chunks" in out
    rows = list(store.iter_all("guideline", include=("metadatas",)))
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected
    assert not (settings.kb_dir / "write.lock").read_text()  # the lock was released
    assert {h.chunk_id for h in hybrid_search(store, "lung cancer screening", k=10)} - committed
