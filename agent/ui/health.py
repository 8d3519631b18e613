"""The start-up checks of `radconsult ui`: the doctor's checks (agent/doctor.py), run once in the background
after the warm-up, so that a page on a machine with a problem says what it is and what to do."""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.doctor import Check

log = logging.getLogger(__name__)


class StartupChecks:
    """Holds the result of one run of the checks; :meth:`banner_html` is what the page shows."""

    def __init__(self) -> None:
        self._checks: list[Check] | None = None
        self._lock = threading.Lock()

    @property
    def done(self) -> bool:
        return self._checks is not None

    def run(self, checks: Callable[[], list[Check]]) -> None:
        """Run ``checks`` (the doctor's, bound to the app's settings and backend) and keep the result."""
        try:
            result = checks()
        except Exception as exc:  # noqa: BLE001 - the doctor reports, never raises; this is the last guard
            log.exception("start-up checks failed")
            from agent.doctor import Check

            result = [Check("start-up checks", "fail", f"{type(exc).__name__}: {exc}", "run `radconsult doctor`")]
        bad = [c for c in result if c.status == "fail"]
        for c in bad:
            log.error("start-up check failed: %s: %s (%s)", c.name, c.detail, c.fix)
        with self._lock:
            self._checks = result

    def start(self, wait: Callable[[], object], checks: Callable[[], list[Check]]) -> threading.Thread:
        """In a background thread: ``wait()`` (the warm-up), then :meth:`run`."""
        def body() -> None:
            wait()
            self.run(checks)

        thread = threading.Thread(target=body, name="radconsult-startup-checks", daemon=True)
        thread.start()
        return thread

    def banner_html(self) -> str:
        """Empty while the checks run and when none failed; else each failure and what to do."""
        with self._lock:
            checks = self._checks
        bad = [c for c in checks or [] if c.status == "fail"]
        if not bad:
            return ""
        items = "".join(f"<li><b>{html.escape(c.name)}</b>: {html.escape(c.detail)}"
                        f"{' &rarr; ' + html.escape(c.fix) if c.fix else ''}</li>" for c in bad)
        return (f'<div class="rc-health" id="rc-health-failed" role="alert">⚠ {len(bad)} start-up check(s) failed '
                f"on this machine; answers that need the failing part will not work until it is fixed "
                f"(`radconsult doctor` shows the full table):<ul>{items}</ul></div>")
