"""The consultation interface the UI, the CLI and the eval depend on. :class:`agent.consultation.Consultation`
implements it; every test fake implements it too and is checked against it (tests/agent/test_protocols.py),
so a fake cannot drift from what the real object returns."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agent.evidence import Evidence
    from agent.llm.base import TokenCallback
    from agent.results import ModelCard, TurnResult
    from agent.summary import Summary
    from tools.imaging import ImageStudy
    from tools.measure import Measurement


@runtime_checkable
class ConsultationAPI(Protocol):
    @property
    def model_name(self) -> str: ...

    @property
    def is_warm(self) -> bool: ...

    def wait_until_ready(self, timeout_s: float | None = None) -> bool: ...

    def ask(self, case_id: str, question: str, images: Sequence[ImageStudy | str | Path] | None = None,
            patient: str | None = None, on_token: TokenCallback | None = None,
            summary: bool = False, measurements: Sequence[Measurement] = ()) -> TurnResult: ...

    def stream(self, case_id: str, question: str, images: Sequence[ImageStudy | str | Path] | None = None,
               patient: str | None = None, measurements: Sequence[Measurement] = ()) -> Iterator[str | TurnResult]: ...

    def history(self, case_id: str) -> list[TurnResult]: ...

    def evidence(self, case_id: str) -> list[Evidence]: ...

    def model_cards(self) -> list[ModelCard]: ...

    def summary(self, case_id: str, impression: bool = True) -> Summary: ...

    def close(self) -> None: ...
