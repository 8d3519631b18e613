"""The Gradio consultation UI: chat with cited answers, evidence panel, viewer, cases, summary sign-off.

* :mod:`agent.ui.controller`: one method per user action (ask, upload, measure, open from and send to the PACS,
  draft, edit, sign, export, login),
  with the audit records; returns plain view models. Unit-tested without a browser.
* :mod:`agent.ui.render`: pure HTML and image rendering (evidence cards, trace, metadata, status).
* :mod:`agent.ui.session`: what one browser session holds; staging of uploads.
* :mod:`agent.ui.layout`: the page's components bound to the controller; ``launch``; ``bind_policy``.
"""

from __future__ import annotations

from agent.ui.controller import UIController
from agent.ui.layout import bind_policy, build_ui, is_loopback, launch

__all__ = ["UIController", "bind_policy", "build_ui", "is_loopback", "launch"]
