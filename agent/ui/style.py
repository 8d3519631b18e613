"""The page's look: one stylesheet and the Gradio theme (kept apart from the layout so each reads on its own)."""

from __future__ import annotations

from typing import Any

CSS = """
.gradio-container {max-width: 1680px !important; margin: 0 auto;}
#rc-header {display:flex; align-items:center; gap:14px; padding:6px 4px 2px 4px;}
#rc-header .rc-title {font-size:1.15rem; font-weight:650; letter-spacing:0.2px;}
#rc-header .rc-sub {opacity:0.7; font-size:0.85rem;}
.rc-disclaimer {border-left:4px solid #d97706; background:rgba(217,119,6,0.10); padding:6px 10px;
  border-radius:4px; font-size:0.85rem;}
.rc-disclaimer b {color:#d97706;}
.rc-health {border-left:4px solid #dc2626; background:rgba(220,38,38,0.10); padding:6px 10px;
  border-radius:4px; font-size:0.85rem;}
.rc-health ul {margin:4px 0 0 18px;}
.rc-ev {border:1px solid var(--border-color-primary); border-radius:6px; padding:6px 8px; margin-bottom:6px;
  font-size:0.84rem;}
.rc-ev:target, .rc-cited {border-color:#0ea5e9; box-shadow:0 0 0 1px #0ea5e9 inset;}
.rc-ev-head {font-weight:600; margin-bottom:2px;}
.rc-badge {background:#0ea5e9; color:white; border-radius:4px; padding:0 6px; margin-right:6px; font-size:0.78rem;}
.rc-kind {text-transform:uppercase; font-size:0.7rem; opacity:0.7; margin-right:6px;}
.rc-src {opacity:0.85;}
.rc-prob {font-family:var(--font-mono); background:rgba(14,165,233,0.15); padding:0 4px; border-radius:3px;}
.rc-caution {color:#d97706;}
.rc-iu {opacity:0.7; font-size:0.78rem;}
.rc-ev blockquote {margin:4px 0 0 0; padding-left:8px; border-left:3px solid var(--border-color-primary);
  font-style:italic;}
.rc-warn {background:rgba(220,38,38,0.12); border-left:4px solid #dc2626; padding:5px 8px; border-radius:4px;
  margin-bottom:6px; font-size:0.84rem;}
.rc-note {opacity:0.75; font-size:0.8rem; margin-bottom:4px;}
.rc-meta, .rc-trace {width:100%; font-size:0.8rem; border-collapse:collapse;}
.rc-meta th {text-align:left; font-weight:500; opacity:0.7; padding:1px 8px 1px 0; width:38%;}
.rc-meta th, .rc-meta td, .rc-trace th, .rc-trace td {border:none !important;
  border-bottom:1px solid var(--border-color-primary) !important; background:transparent !important;}
.rc-meta, .rc-trace {border:none !important;}
#rc-meta table, #rc-meta tr {border:none !important;}
#rc-summary h1 {font-size:1.15rem; margin:4px 0;}
#rc-summary h2 {font-size:0.95rem; margin:8px 0 2px 0; text-transform:uppercase; letter-spacing:0.4px;
  opacity:0.85;}
#rc-summary p, #rc-summary li {font-size:0.86rem;}
#rc-evidence {max-height:calc(100vh - 160px); overflow-y:auto;}
#rc-chat a, #rc-summary a {color:#38bdf8; text-decoration:none; font-weight:600;}
.rc-meta td, .rc-trace td, .rc-trace th {padding:2px 6px 2px 0; vertical-align:top;}
.rc-auto {font-size:0.72rem; color:#b45309;}
.rc-args {font-family:var(--font-mono); font-size:0.74rem; opacity:0.85; word-break:break-all;}
.rc-empty {opacity:0.6; font-size:0.84rem; padding:6px 0;}
#rc-turn-status {font-size:0.8rem; opacity:0.8; min-height:1em;}
.rc-status-draft {color:#dc2626; font-weight:600;}
.rc-status-signed {color:#16a34a; font-weight:600;}
#rc-viewer img {background:#000;}
footer {display:none !important;}
"""


def theme() -> Any:
    import gradio as gr

    return gr.themes.Soft(primary_hue="sky", neutral_hue="slate", radius_size="sm", spacing_size="sm",
                          text_size="sm", font=["Inter", "system-ui", "sans-serif"])
