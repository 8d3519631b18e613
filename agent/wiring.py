"""The one place that turns :class:`~agent.settings.Settings` into the lower layers' own configs.

``tools/`` and ``knowledge/`` never import ``agent``: each takes a small frozen config of its own
(imaging limits, the de-identification policy, the classifier config, the knowledge-base config).
Entry points read the settings once and pass these configs down.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from tools.errors import SettingsError

if TYPE_CHECKING:  # pragma: no cover
    from agent.settings import Settings
    from knowledge.config import KnowledgeConfig
    from tools.classifiers.config import ClassifierConfig
    from tools.deid import DeidPolicy
    from tools.imaging import ImagingConfig, ImagingLimits
    from tools.pacs import PacsConfig
    from tools.pacs_reid import Pseudonymiser, ReidMap


# --- imaging and de-identification ----------------------------------------------------------------
def deid_policy(settings: Settings) -> DeidPolicy:
    """The de-identification policy: the installation secret and the date rule (keep or shift)."""
    from tools.deid import DeidPolicy

    return DeidPolicy(secret_path=settings.secret_path, dates=settings.deid_dates,
                      max_shift_days=settings.deid_max_shift_days)


def imaging_limits(settings: Settings) -> ImagingLimits:
    """The image loader's input limits (file size, pixel values, frames, peak decode memory)."""
    from tools.imaging import ImagingLimits

    return ImagingLimits(max_file_bytes=settings.max_file_bytes, max_pixels=settings.max_pixels,
                         max_frames=settings.max_frames, max_decode_bytes=settings.max_decode_bytes)


def imaging_config(settings: Settings) -> ImagingConfig:
    """What ``tools.imaging.load`` needs: its limits and the de-identification policy."""
    from tools.imaging import ImagingConfig

    return ImagingConfig(deid=deid_policy(settings), limits=imaging_limits(settings))


# --- classifiers -------------------------------------------------------------------------------------
def classifier_config(settings: Settings) -> ClassifierConfig:
    """The classifiers' config: device, extra bundle directories, and the decode cache for training data."""
    from tools.classifiers.config import ClassifierConfig

    return ClassifierConfig(device=settings.device, model_dirs=tuple(settings.model_dirs),
                            cache_dir=settings.cache_dir / "classifier-data")


# --- knowledge base ----------------------------------------------------------------------------------
def knowledge_config(settings: Settings) -> KnowledgeConfig:
    """The knowledge base's config: store location, embedding model, limits, and the de-identification
    policy that reports need (installation secret, date rule)."""
    from knowledge.config import KnowledgeConfig

    return KnowledgeConfig(
        kb_dir=settings.kb_dir, cache_dir=settings.cache_dir, chroma_url=settings.chroma_url,
        embedding_model=settings.embedding_model, embedding_backend=settings.embedding_backend,
        max_ingest_bytes=settings.max_ingest_bytes, max_query_chars=settings.max_query_chars,
        batch_size=settings.kb_batch_size, deid=deid_policy(settings))


# --- PACS ------------------------------------------------------------------------------------------
def pacs_config(settings: Settings) -> PacsConfig:
    """The PACS connection from ``pacs_*`` settings; the credential is read here, from the file or the
    environment variable the settings name, and travels only inside a :class:`tools.pacs.Secret`."""
    from tools.pacs import PacsAuth, PacsConfig, Secret

    if not settings.pacs_url:
        raise SettingsError("no PACS is configured: set RADCONSULT_PACS_URL to its DICOMweb root "
                            "(e.g. https://pacs.example.org/dicom-web)")
    auth = None
    if settings.pacs_auth != "none":
        credential = _pacs_credential(settings)
        if settings.pacs_auth == "basic":
            user, sep, password = credential.partition(":")
            if not sep or not user or not password:
                raise SettingsError("the PACS credential for basic authentication must be user:password")
            auth = PacsAuth("basic", Secret(password), username=user)
        else:
            auth = PacsAuth("bearer", Secret(credential))
    return PacsConfig(url=settings.pacs_url.rstrip("/"), auth=auth, timeout_s=settings.pacs_timeout_s,
                      max_instances=settings.pacs_max_instances, max_series_bytes=settings.pacs_max_series_bytes)


def _pacs_credential(settings: Settings) -> str:
    if settings.pacs_auth_env:
        value = os.environ.get(settings.pacs_auth_env, "").strip()
        if not value:
            raise SettingsError(f"the environment variable named by RADCONSULT_PACS_AUTH_ENV "
                                f"({settings.pacs_auth_env}) is not set or empty")
        return value
    if settings.pacs_auth_file:
        path = settings.pacs_auth_file.expanduser()
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"cannot read the PACS credential file {path}: {exc.strerror}") from None
        if mode & 0o077:
            raise SettingsError(f"the PACS credential file {path} is readable by other accounts: chmod 600 it")
        if not value:
            raise SettingsError(f"the PACS credential file {path} is empty")
        return value
    raise SettingsError(f"pacs_auth is {settings.pacs_auth}: set RADCONSULT_PACS_AUTH_FILE (a file holding the "
                        "credential) or RADCONSULT_PACS_AUTH_ENV (the name of a variable holding it)")


def pacs_pseudonymiser(settings: Settings) -> Pseudonymiser:
    """The de-identification the PACS code applies (tools.deid with this installation's secret and policy)."""
    from tools.pacs_reid import Pseudonymiser

    return Pseudonymiser(deid_policy(settings))


def reid_map(settings: Settings) -> ReidMap:
    """The re-identification map in the data directory (``pacs/reid.sqlite``, mode 0600)."""
    from tools.pacs_reid import ReidMap

    return ReidMap(settings.pacs_dir / "reid.sqlite")
