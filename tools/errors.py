"""Typed errors shared by every layer. The CLI and UI show ``str(error)``, never a traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class RadconsultError(Exception):
    """Base class: a failure the user can understand and act on."""


class SettingsError(RadconsultError):
    """A setting has an invalid value."""


# --- input -------------------------------------------------------------------------------------
class InputError(RadconsultError):
    """The input itself is unusable (missing, empty, wrong kind, corrupt)."""


class FileMissingError(InputError):
    pass


class FileTooLargeError(InputError):
    pass


class UnsupportedFormatError(InputError):
    pass


class CorruptFileError(InputError):
    pass


class NoPixelDataError(InputError):
    pass


class UnsupportedTransferSyntaxError(InputError):
    """Compressed pixel data that no installed decoder handles; the message names the package to add."""


class InvalidImageError(InputError):
    """Pixel content that cannot be used: 1x1, NaN/Inf, constant, wrong dimensionality."""


class DataArchiveError(InputError):
    """A training or evaluation data archive is missing, truncated, corrupt or laid out differently from
    what the recipe expects; the message names the archive and what is wrong."""


class ComparisonError(InputError):
    """Two studies that cannot be compared for a lesion (no study date, marked absent on both, one study only)."""


class DifferentPatientsError(ComparisonError):
    """The studies of one comparison belong to different patients (their pseudonymous patient keys differ)."""


class PriorNewerError(ComparisonError):
    """A study given as the prior is newer than the current study."""


class NoApplicableModelError(InputError):
    """No classifier is intended for this kind of image (or its metadata cannot tell); name one explicitly."""


# --- models and services -----------------------------------------------------------------------
class ModelUnavailableError(RadconsultError):
    """A model (classifier bundle, embedding model, LLM) is missing, corrupt or cannot load."""


class BundleError(ModelUnavailableError):
    """A classifier bundle whose files disagree with each other or with its network."""


class UnknownNameError(RadconsultError, KeyError):
    """A registry lookup failed; the message suggests the near names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CaseBusyError(RadconsultError):
    """Another question of the same case is being answered (by this process or another)."""


class CaseStoreError(RadconsultError):
    """The case database (or its per-case locks) cannot be written: a read-only or full disk."""


class StoreError(RadconsultError):
    """The knowledge base cannot be opened or written."""


class LLMError(RadconsultError):
    """The LLM backend failed: not loaded, server down, timed out, context overflow."""


class LLMUnavailableError(LLMError):
    """The language model cannot be reached or started: a server that is down, a runtime that will not load,
    or a worker that crashed again and again (it is not restarted in a loop)."""


class LLMCrashedError(LLMError):
    """The language model stopped in the middle of an answer: its worker process died (a native crash, an
    out-of-memory kill) or its server dropped the connection. That turn ends; the next one may ask again."""


class LLMTimeoutError(LLMError):
    """The language model gave no answer in time (``llm_timeout_s``) or stopped producing output
    (``llm_stall_s``: a hung runtime, which is then stopped and restarted)."""


class LLMContextError(LLMError):
    """The conversation no longer fits the model's context window."""


class ToolArgumentError(RadconsultError):
    """A tool was called with arguments that do not match its schema."""


class ToolExecutionError(RadconsultError):
    """A tool was called correctly but failed while running."""


# --- PACS (DICOMweb) ------------------------------------------------------------------------------
class PacsError(RadconsultError):
    """Talking to the PACS failed. Messages name the PACS by host only and never echo a searched identifier."""


class PacsUnavailableError(PacsError):
    """The PACS cannot be reached (refused, reset, DNS) or answered with a server error (5xx)."""


class PacsTimeoutError(PacsUnavailableError):
    """The PACS did not answer within ``pacs_timeout_s``."""


class PacsAuthError(PacsError):
    """The PACS refused our credentials (HTTP 401) or this account's access (HTTP 403)."""


class PacsNotFoundError(PacsError):
    """No study, or no series, with that UID on the PACS."""


class EmptySeriesError(PacsError):
    """A series holds no image the viewer can show (only reports, presentation states, key objects)."""


class SeriesTooLargeError(PacsError, FileTooLargeError):
    """A series is over ``pacs_max_instances`` or ``pacs_max_series_bytes``: checked before it is retrieved."""


class PartialRetrieveError(PacsError):
    """One or more instances of a series failed to arrive or are corrupt: nothing was kept."""


class StowRejectedError(PacsError):
    """The PACS did not store what was sent (an HTTP error, a failed-SOP item, or it is missing afterwards)."""


class ReidentificationError(PacsError):
    """A report cannot be mapped back to the PACS's own identifiers: its study was not opened from the PACS on
    this installation, or the re-identification map was deleted."""


def validation_problems(error: ValidationError) -> str:
    """A pydantic ``ValidationError`` as one readable line: ``field: message; other: message``.

    The one formatter for every boundary that validates input with pydantic (settings, tool arguments,
    calculator arguments); callers say what was being validated around it.
    """
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ())) or "value"
        parts.append(f"{where}: {str(item.get('msg', 'invalid')).removeprefix('Value error, ')}")
    return "; ".join(parts) or "invalid value"
