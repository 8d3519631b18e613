"""The one statement every output of radconsult carries: the UI, answers, summaries, exports, model results."""

from __future__ import annotations

DISCLAIMER = ("Decision support, not a diagnosis: a draft for a clinician, who must review every statement "
              "before relying on it.")
