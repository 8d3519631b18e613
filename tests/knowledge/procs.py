"""Real `radconsult` processes for the knowledge-base tests: the CLI in a child process with the
network switched off, a private data directory, and the ONNX export of the embedding model copied
from the session's (so that each child does not export the model again)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REPO_ROOT

OFFLINE_CLI = (
    "import socket, sys\n"
    "def _no_network(*a, **k):\n"
    "    raise OSError('network disabled by the test')\n"
    "socket.socket.connect = _no_network\n"
    "socket.create_connection = _no_network\n"
    "from agent.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def cli_env(data_dir: Path, embedder_cache: Path | None, **extra: str) -> dict[str, str]:
    """Environment for a child `radconsult`: ``data_dir`` as its data directory, no user config, and
    the embedding export from ``embedder_cache`` (the session embedder's cache directory) reused."""
    if embedder_cache is not None and (embedder_cache / "embeddings").is_dir() \
            and not (data_dir / "cache" / "embeddings").exists():
        shutil.copytree(embedder_cache / "embeddings", data_dir / "cache" / "embeddings")
    env = {**os.environ, "RADCONSULT_DATA_DIR": str(data_dir), "XDG_CONFIG_HOME": str(data_dir.parent / "cfg"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    for name in ("RADCONSULT_CONFIG", "RADCONSULT_CHROMA_URL"):
        env.pop(name, None)
    env.update(extra)
    return env


def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", OFFLINE_CLI, *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    """Terminate a child (SIGTERM) and collect its output."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def pdq_sections(folder: Path, n_files: int, chars: int = 3000) -> list[Path]:
    """Real guideline text: sections of the NCI PDQ summaries in ../shared, one Markdown file each."""
    from tests.conftest import shared_file

    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name in ("types-breast-hp-breast-screening-pdq.md", "types-prostate-hp-prostate-screening-pdq.md",
                 "types-colorectal-hp-colorectal-screening-pdq.md"):
        text = shared_file(f"guidelines/nci_pdq/{name}").read_text(encoding="utf-8")
        for n, part in enumerate(p for p in text.split("\n## ") if p.strip()):
            if n == 0 or len(part) < 400:
                continue
            path = folder / f"{Path(name).stem[:20]}-{n:03d}.md"
            path.write_text(f"# {Path(name).stem}\n\n## {part[:chars]}\n", encoding="utf-8")
            paths.append(path)
            if len(paths) == n_files:
                return paths
    return paths
