"""The Gradio page: creates the components and binds each event to one :class:`UIController` method.

Nothing here decides anything: the controller does the work and the audit records and returns view
models; the functions below only turn those into component updates. ``launch`` starts the page with
the limits from settings (queue, concurrency, upload size, the only paths served); ``bind_policy``
decides whether a login is needed: off only on loopback, and a public bind without users is refused.
"""

from __future__ import annotations

import html
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.audit import AuditLog
from agent.signoff import DEFAULT_INTENDED_USE
from agent.ui.controller import (
    MEASURE_LABELS,
    NODULE_TYPES,
    AskUpdate,
    CasePanel,
    MeasureUpdate,
    PacsPanel,
    SummaryPanel,
    UIController,
    ViewerPanel,
    make_login,
)
from agent.ui.render import WINDOW_PRESETS
from agent.ui.session import cleanup_state
from agent.ui.style import CSS, theme
from tools.disclaimer import DISCLAIMER
from tools.errors import InputError

if TYPE_CHECKING:
    from agent.protocol import ConsultationAPI
    from agent.settings import Settings
    from agent.ui.health import StartupChecks

UPLOAD_TYPES = [".dcm", ".dicom", ".zip", ".png", ".jpg", ".jpeg", ".nii", ".gz", ".ima", ""]
# the box empties after each upload (the viewer shows the study): its label says it adds a study
UPLOAD_LABEL = "Add a study: DICOM, series .zip, PNG/JPEG, NIfTI"


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_policy(host: str, settings: Settings) -> Callable[[str, str], bool] | None:
    """The login check for ``launch`` (None: no login, loopback only). A non-loopback ``host``
    without users raises :class:`InputError` before anything else starts."""
    from agent.users import UserStore

    if not UserStore(settings.users_path).has_users():
        if is_loopback(host):
            return None
        raise InputError(f"refusing to bind {host} without users: anyone on the network could use it. "
                         "Add one with `radconsult users add NAME`, or bind 127.0.0.1.")
    return make_login(settings)


def _user(request: Any) -> str | None:
    return request.username if request is not None else None


def _key(request: Any) -> str | None:
    return request.session_hash if request is not None else None


def build_ui(agent: ConsultationAPI, settings: Settings, health: StartupChecks | None = None) -> Any:
    """The page, around ``agent``. Returns a ``gr.Blocks``; start it with :func:`launch`. ``health``: the
    start-up checks, whose failures the page shows at the top once they have run."""
    import gradio as gr

    ctl = UIController(agent, settings, health)

    def viewer_updates(v: ViewerPanel) -> tuple:
        measures = (v.measurements_html, gr.update(choices=list(v.measurement_choices), value=None),
                    study_pick_update(v))
        if v.image is None:
            return (None, gr.update(visible=False, value="Default"), gr.update(visible=False, value=0),
                    gr.update(value=False, interactive=False), "", v.metadata_html, *measures)
        return (v.image, gr.update(visible=v.is_ct, value=v.preset),
                gr.update(visible=v.depth > 1, maximum=max(1, v.depth - 1), value=v.slice_index),
                gr.update(value=v.overlay_on, interactive=v.overlay_available), v.caption, v.metadata_html, *measures)

    def study_pick_update(v: ViewerPanel) -> Any:
        """The "Study shown" choice: visible once the case holds a prior (or any second study)."""
        return gr.update(choices=list(v.study_choices), value=v.shown, visible=len(v.study_choices) > 1)

    def measure_updates(u: MeasureUpdate) -> tuple:
        return (*viewer_updates(u.viewer), u.message)

    def pacs_updates(p: PacsPanel) -> tuple:
        keep = gr.update()
        studies = gr.update(choices=p.studies, value=None) if p.studies is not None else keep
        series = gr.update(choices=p.series, value=p.series_value) if p.series is not None else keep
        return p.message, studies, series

    def case_updates(p: CasePanel) -> tuple:
        return (gr.update(choices=p.choices, value=p.case_id), p.info_md, *viewer_updates(p.viewer), p.chat,
                p.evidence_html, p.trace_html, "", p.summary_status_html, "", gr.update(interactive=p.can_send))

    def ask_updates(u: AskUpdate) -> tuple:
        """Outputs of a turn: never the question box, where the next question may be being typed."""
        keep = gr.update()
        view = viewer_updates(u.viewer) if u.viewer is not None else (keep,) * len(view_comps)
        return (u.chat, u.evidence_html if u.evidence_html is not None else keep,
                u.trace_html if u.trace_html is not None else keep, *view,
                u.status_html if u.status_html is not None else keep)

    def summary_updates(p: SummaryPanel, with_edit: bool = False) -> tuple:
        out = (p.markdown if p.markdown is not None else gr.update(), p.status_html)
        return out + ((p.edit_text if p.edit_text is not None else gr.update(),) if with_edit else ())

    iu = "; ".join(f"{c.name}: {c.intended_use}" for c in ctl.cards) or DEFAULT_INTENDED_USE
    # Gradio's own cache (uploads before staging, returned export copies): files older than an hour go.
    with gr.Blocks(title="radconsult · consultation", fill_width=True, delete_cache=(600, 3600)) as demo:
        state = gr.State(None, delete_callback=cleanup_state)
        gr.HTML(f'<div id="rc-header"><span class="rc-title">radconsult</span>'
                f'<span class="rc-sub">imaging consultation · local, offline</span></div>'
                f'<div class="rc-disclaimer" id="rc-disclaimer"><b>{html.escape(DISCLAIMER)}</b> '
                f'<details style="display:inline"><summary style="display:inline;cursor:pointer">'
                f'Models\' intended use</summary>{html.escape(iu)}</details></div>')
        health_html = gr.HTML(elem_id="rc-health")  # failed start-up checks, once they have run
        health_timer = gr.Timer(5.0)
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=320):
                with gr.Row():
                    case_dd = gr.Dropdown(label="Case", choices=[], scale=3, elem_id="rc-case")
                    new_btn = gr.Button("+ New case", scale=1, size="sm", elem_id="rc-new-case")
                case_info = gr.Markdown(elem_id="rc-case-info")
                with gr.Accordion("Open from PACS", open=True, visible=ctl.pacs_enabled, elem_id="rc-pacs"):
                    with gr.Row():
                        pacs_acc = gr.Textbox(label="Accession number", max_length=64, elem_id="rc-pacs-accession")
                        pacs_pid = gr.Textbox(label="Patient ID", max_length=64, elem_id="rc-pacs-pid")
                    with gr.Row():
                        pacs_date = gr.Textbox(label="Study date", placeholder="YYYY-MM-DD or FROM-TO", max_length=40,
                                               elem_id="rc-pacs-date")
                        pacs_mod = gr.Textbox(label="Modality", placeholder="CT, MR, CR…", max_length=16,
                                              elem_id="rc-pacs-modality")
                    pacs_search_btn = gr.Button("Search", size="sm", elem_id="rc-pacs-search")
                    pacs_study = gr.Dropdown(label="Study", choices=[], elem_id="rc-pacs-study")
                    pacs_series = gr.Dropdown(label="Series", choices=[], elem_id="rc-pacs-series")
                    pacs_open_btn = gr.Button("Open", size="sm", variant="primary", elem_id="rc-pacs-open")
                    pacs_msg = gr.Markdown(elem_id="rc-pacs-msg")
                upload = gr.File(label=UPLOAD_LABEL, file_count="multiple", file_types=UPLOAD_TYPES, height=150,
                                 elem_id="rc-upload")
                upload_msg = gr.Markdown(elem_id="rc-upload-msg")
                study_pick = gr.Radio([], label="Study shown (the current study and its priors)", visible=False,
                                      elem_id="rc-study-pick")
                viewer = gr.Image(show_label=False, interactive=False, height=440, elem_id="rc-viewer",
                                  buttons=["fullscreen"], format="png")
                with gr.Row():
                    preset = gr.Radio(list(WINDOW_PRESETS), value="Default", label="CT window", visible=False,
                                      elem_id="rc-preset")
                    overlay = gr.Checkbox(label="Saliency overlay", value=False, interactive=False,
                                          elem_id="rc-overlay")
                slice_sl = gr.Slider(0, 1, value=0, step=1, label="Slice", visible=False, elem_id="rc-slice")
                with gr.Accordion("Measure (click both ends of a length on the image)", open=True,
                                  elem_id="rc-measure-acc"):
                    with gr.Row():
                        measure_type = gr.Dropdown(list(NODULE_TYPES), value="solid", label="Type",
                                                   elem_id="rc-measure-type")
                        measure_label = gr.Dropdown(list(MEASURE_LABELS), value="long axis", label="Label",
                                                    elem_id="rc-measure-label")
                        measure_lesion = gr.Textbox(label="Lesion (same name on each study)", max_length=40,
                                                    placeholder="e.g. RUL nodule 1", elem_id="rc-measure-lesion")
                        not_seen_btn = gr.Button("Not seen on this study", size="sm", elem_id="rc-not-seen")
                    measure_msg = gr.Markdown(elem_id="rc-measure-msg")
                    measure_list = gr.HTML(elem_id="rc-measures")
                    with gr.Row():
                        measure_pick = gr.Dropdown(label="Measurement", choices=[], scale=3,
                                                   elem_id="rc-measure-pick")
                        remove_btn = gr.Button("Remove", size="sm", scale=1, elem_id="rc-measure-remove")
                        clear_btn = gr.Button("Clear all", size="sm", scale=1, elem_id="rc-measure-clear")
                overlay_caption = gr.Markdown(elem_id="rc-overlay-caption")
                with gr.Accordion("De-identified metadata", open=True):
                    meta = gr.HTML(elem_id="rc-meta")
            with gr.Column(scale=6, min_width=420):
                chatbot = gr.Chatbot(show_label=False, height=500, elem_id="rc-chat", layout="panel",
                                     buttons=["copy"], feedback_options=None,
                                     placeholder="Upload a study, then ask a question. Answers cite "
                                                 "evidence as [E1], [E2]… listed on the right.")
                with gr.Row():
                    question = gr.Textbox(show_label=False, placeholder="Ask about this case…", lines=2,
                                          max_lines=6, scale=6, elem_id="rc-question", max_length=4000)
                    send = gr.Button("Ask", variant="primary", scale=1, elem_id="rc-send")
                turn_status = gr.HTML(elem_id="rc-turn-status")
                with gr.Accordion("Tool calls (trace)", open=False, elem_id="rc-trace-acc"):
                    trace = gr.HTML(elem_id="rc-trace")
                with gr.Accordion("Summary & sign-off", open=True, elem_id="rc-summary-acc"):
                    with gr.Row():
                        draft_btn = gr.Button("Draft summary", size="sm", elem_id="rc-draft")
                        sign_btn = gr.Button("Sign", size="sm", variant="stop", elem_id="rc-sign")
                        md_btn = gr.Button("Export Markdown", size="sm", elem_id="rc-export-md")
                        pdf_btn = gr.Button("Export PDF", size="sm", elem_id="rc-export-pdf")
                        sr_btn = gr.Button("Export DICOM SR", size="sm", elem_id="rc-export-sr")
                        send_pacs_btn = gr.Button("Send to PACS", size="sm", interactive=False,
                                                  visible=ctl.pacs_enabled, elem_id="rc-send-pacs")
                    sum_status = gr.HTML(elem_id="rc-summary-status")
                    with gr.Accordion("Edit before signing", open=False, elem_id="rc-edit-acc"):
                        edit_box = gr.Textbox(show_label=False, lines=10, max_lines=30, elem_id="rc-edit",
                                              placeholder="Draft a summary first; edit its sections here. "
                                                          "Editing a signed summary makes a new version.")
                        save_btn = gr.Button("Save edit", size="sm", elem_id="rc-save-edit")
                    summary_md = gr.Markdown(elem_id="rc-summary")
                    export_file = gr.File(label="Export", interactive=False, elem_id="rc-export-file", visible=False)
            with gr.Column(scale=3, min_width=280):
                gr.Markdown("**Evidence**")
                evidence = gr.HTML(elem_id="rc-evidence")

        view_comps = [viewer, preset, slice_sl, overlay, overlay_caption, meta, measure_list, measure_pick, study_pick]
        case_comps = [case_dd, case_info, *view_comps, chatbot, evidence, trace, summary_md, sum_status, turn_status,
                      send_pacs_btn]

        def on_load(st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            return (sess, *case_updates(ctl.case_panel(sess)))

        def on_new_case(st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            return (sess, *case_updates(ctl.new_case(sess, _user(request))))

        def on_switch(case_id, st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            return (sess, *case_updates(ctl.switch_case(sess, case_id)))

        def on_upload(files, st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            paths = [Path(f if isinstance(f, str) else f.name) for f in (files or [])]
            msg = ctl.upload(sess, _user(request), paths)
            return (sess, msg, None, *case_updates(ctl.case_panel(sess)))

        def on_view(preset_v, slice_v, overlay_v, st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            return viewer_updates(ctl.viewer(sess.case, preset_v or "Default", int(slice_v or 0), bool(overlay_v)))

        def on_mark(preset_v, slice_v, overlay_v, type_v, label_v, lesion_v, st, evt: gr.SelectData,
                    request: gr.Request):
            sess = ctl.session(st, _key(request))
            shown = (float(evt.index[0]), float(evt.index[1])) if evt is not None and evt.index else None
            return measure_updates(ctl.mark_point(sess, shown, preset=preset_v or "Default",
                                                  slice_index=int(slice_v or 0), overlay=bool(overlay_v),
                                                  nodule_type=type_v or None, label=label_v or "long axis",
                                                  lesion=lesion_v or ""))

        # comparison with priors: which study is shown, and a lesion not seen on it
        def on_show_study(pick, preset_v, slice_v, overlay_v, st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            return measure_updates(ctl.show_study(sess, pick, preset=preset_v or "Default",
                                                  slice_index=int(slice_v or 0), overlay=bool(overlay_v)))

        def on_not_seen(lesion_v, preset_v, slice_v, overlay_v, st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            return measure_updates(ctl.mark_not_seen(sess, lesion_v or "", preset=preset_v or "Default",
                                                     slice_index=int(slice_v or 0), overlay=bool(overlay_v)))

        def on_remove(pick, preset_v, slice_v, overlay_v, st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            return measure_updates(ctl.remove_measurement(sess, pick or None, preset=preset_v or "Default",
                                                          slice_index=int(slice_v or 0), overlay=bool(overlay_v)))

        def on_clear(preset_v, slice_v, overlay_v, st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            return measure_updates(ctl.remove_measurement(sess, "all", preset=preset_v or "Default",
                                                          slice_index=int(slice_v or 0), overlay=bool(overlay_v)))

        def on_pacs_search(acc, pid, date, mod, st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            return (sess, *pacs_updates(ctl.pacs_search(sess, _user(request), accession=acc or "",
                                                        patient_id=pid or "", date=date or "", modality=mod or "")))

        def on_pacs_study(study_uid, st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            return (sess, *pacs_updates(ctl.pacs_choose_study(sess, study_uid)))

        def on_pacs_open(study_uid, series_uid, st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            panel = ctl.pacs_open(sess, _user(request), study_uid, series_uid)
            return (sess, panel.message, *case_updates(ctl.case_panel(sess)))

        def on_send_pacs(st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            return sess, ctl.send_to_pacs(sess, _user(request)), gr.update(interactive=ctl.can_send(sess.case))

        def on_submit(q, st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            update = ctl.submit(sess, q)
            return sess, update.chat, "", update.status_html if update.status_html is not None else gr.update()

        def on_drain(st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            for update in ctl.drain(sess, _user(request)):
                yield (sess, *ask_updates(update))

        def on_draft(st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            panel = ctl.draft(sess, _user(request))
            return (sess, *summary_updates(panel, with_edit=True), gr.update(interactive=ctl.can_send(sess.case)))

        def on_save_edit(text, st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            panel = ctl.save_edit(sess, _user(request), text)
            return (sess, *summary_updates(panel), gr.update(interactive=ctl.can_send(sess.case)))

        def on_sign(st, request: gr.Request):
            sess = ctl.session(st, _key(request))
            panel = ctl.sign(sess, _user(request))
            return (sess, *summary_updates(panel), gr.update(interactive=ctl.can_send(sess.case)))

        def make_export(fmt: str):
            def on_export(st, request: gr.Request):
                res = ctl.export(ctl.session(st, _key(request)), _user(request), fmt)
                shown = gr.update(value=str(res.path), visible=True) if res.path else gr.update(value=None,
                                                                                                  visible=False)
                return shown, res.status_html
            on_export.__annotations__["request"] = gr.Request
            return on_export

        def on_unload(request: gr.Request):
            ctl.unload(_key(request))

        for fn in (on_load, on_new_case, on_switch, on_upload, on_view, on_submit, on_drain, on_draft, on_sign, on_unload,
                   on_save_edit, on_mark, on_remove, on_clear, on_pacs_search, on_pacs_study, on_pacs_open,
                   on_send_pacs, on_show_study, on_not_seen):
            fn.__annotations__["request"] = gr.Request  # string annotations: tell Gradio what to inject
        on_mark.__annotations__["evt"] = gr.SelectData
        priv = {"api_visibility": "private"}
        demo.load(on_load, [state], [state, *case_comps], **priv)

        def on_health() -> tuple:
            banner, done = ctl.health_banner()
            return banner, gr.Timer(active=not done)

        demo.load(on_health, None, [health_html, health_timer], **priv)
        health_timer.tick(on_health, None, [health_html, health_timer], **priv)
        new_btn.click(on_new_case, [state], [state, *case_comps], **priv)
        case_dd.input(on_switch, [case_dd, state], [state, *case_comps], **priv)
        upload.upload(on_upload, [upload, state], [state, upload_msg, upload, *case_comps], **priv)
        for comp in (preset, slice_sl, overlay):
            comp.input(on_view, [preset, slice_sl, overlay, state], view_comps, show_progress="hidden", **priv)
        ask_out = [state, chatbot, evidence, trace, *view_comps, turn_status]
        ask_kw = {"concurrency_id": "llm", "concurrency_limit": 1, **priv}
        # Sending takes the question at once (shown in the chat, queued while another is answered) and
        # clears the box; answering runs one at a time. A question sent during a turn is never dropped.
        submit_kw = {"trigger_mode": "multiple", "concurrency_limit": None, "show_progress": "hidden", **priv}
        for trigger in (send.click, question.submit):
            trigger(on_submit, [question, state], [state, chatbot, question, turn_status], **submit_kw).then(
                on_drain, [state], ask_out, **ask_kw)
        draft_btn.click(on_draft, [state], [state, summary_md, sum_status, edit_box, send_pacs_btn], **ask_kw)
        save_btn.click(on_save_edit, [edit_box, state], [state, summary_md, sum_status, send_pacs_btn], **priv)
        sign_btn.click(on_sign, [state], [state, summary_md, sum_status, send_pacs_btn], **priv)
        send_pacs_btn.click(on_send_pacs, [state], [state, sum_status, send_pacs_btn], **priv)
        measure_out = [*view_comps, measure_msg]
        view_in = [preset, slice_sl, overlay]
        viewer.select(on_mark, [*view_in, measure_type, measure_label, measure_lesion, state], measure_out,
                      show_progress="hidden", **priv)
        study_pick.input(on_show_study, [study_pick, *view_in, state], measure_out, **priv)
        not_seen_btn.click(on_not_seen, [measure_lesion, *view_in, state], measure_out, **priv)
        remove_btn.click(on_remove, [measure_pick, *view_in, state], measure_out, **priv)
        clear_btn.click(on_clear, [*view_in, state], measure_out, **priv)
        pacs_search_btn.click(on_pacs_search, [pacs_acc, pacs_pid, pacs_date, pacs_mod, state],
                              [state, pacs_msg, pacs_study, pacs_series], **priv)
        pacs_study.input(on_pacs_study, [pacs_study, state], [state, pacs_msg, pacs_study, pacs_series], **priv)
        pacs_open_btn.click(on_pacs_open, [pacs_study, pacs_series, state], [state, pacs_msg, *case_comps], **priv)
        md_btn.click(make_export("md"), [state], [export_file, sum_status], **priv)
        pdf_btn.click(make_export("pdf"), [state], [export_file, sum_status], **priv)
        sr_btn.click(make_export("sr"), [state], [export_file, sum_status], **priv)
        demo.unload(on_unload)
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=settings.concurrency)
    demo.rc_controller = ctl  # type: ignore[attr-defined]
    return demo


def launch(demo: Any, settings: Settings, *, host: str, port: int,
           auth: Callable[[str, str], bool] | None, block: bool = True) -> Any:
    """Start ``demo`` with the page theme, the upload limit and only the session directories served."""
    if auth is None and not is_loopback(host):
        raise InputError(f"refusing to bind {host} without authentication")
    root = settings.cache_dir / "ui-sessions"
    root.mkdir(parents=True, exist_ok=True)
    AuditLog.from_settings(settings).append("ui_start", user=None,
                                             details={"loopback": is_loopback(host), "auth": auth is not None})
    return demo.launch(
        server_name=host, server_port=port, auth=auth,
        auth_message="radconsult: log in with the account from `radconsult users add`.",
        max_file_size=settings.max_upload_bytes, allowed_paths=[str(root)],
        blocked_paths=[str(p) for p in (settings.kb_dir, settings.audit_log_path, settings.users_path,
                                        settings.secret_path, settings.cases_db_path, settings.data_dir / "reports",
                                        settings.integrity_key_file.parent)],
        show_error=False, quiet=True, footer_links=[], prevent_thread_lock=not block,
        theme=theme(), css=CSS, ssr_mode=False, pwa=False, mcp_server=False,
    )
