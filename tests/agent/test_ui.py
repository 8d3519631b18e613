"""UI logic without a browser: rendering, uploads, the bind policy, and the controller driving the REAL
Consultation (real tools: a real classifier on a real image, a real calculator) over a scripted chat model.
"""

from __future__ import annotations

import json
import threading
import zipfile

import numpy as np
import pytest

from agent.consultation import Consultation
from agent.evidence import Ledger
from agent.results import ToolCallRecord
from agent.summary import evidence_ref
from agent.ui import UIController, bind_policy, build_ui, launch, render
from agent.ui.controller import STARTING
from agent.ui.session import SessionState, cleanup_state, stage_upload
from tests.agent.fakes import ScriptedBackend, call, real_tools, text
from tests.conftest import shared_file
from tools.errors import FileTooLargeError, InputError
from tools.imaging import ImageStudy, SafeMetadata


def make_study(modality="CT", shape=(5, 64, 64), burned=False) -> ImageStudy:
    rng = np.random.default_rng(0)
    pixels = rng.uniform(-1000, 1000, size=shape).astype(np.float32)
    display = (pixels + 1000) / 2000
    return ImageStudy(pixels=pixels, display=display, spacing=(1.0,) * len(shape), source_format="dicom",
                      metadata=SafeMetadata(modality=modality, burned_in_annotation=burned, frames=shape[0]),
                      patient_key="PK-test", study_uid="2.25.11", series_uid="2.25.12",
                      sop_instance_uids=("2.25.13",), sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                      warnings=("Burned-in annotation present",) if burned else ())


def classifier_ledger() -> Ledger:
    ledger = Ledger()
    ledger.add("classifier", "classify_study", "ptx-densenet", title="Pneumothorax",
               quote="ptx-densenet 1.0: P(pneumothorax) = 0.07 -> normal",
               facts={"model": "ptx-densenet", "version": "1.0", "label": "normal",
                      "probabilities": {"normal": 0.93, "pneumothorax": 0.07},
                      "caution": "Not validated for supine films.",
                      "model_card": {"intended_use": "Adult frontal chest radiographs."}})
    ledger.add("guideline", "search_guidelines", "BTS pleural disease guideline 2023", title="BTS 2023",
               section="Management of pneumothorax", quote="Small pneumothoraces without symptoms may be observed.")
    return ledger


# --- rendering -------------------------------------------------------------------------------------
def test_render_view_windows_and_slices():
    st = make_study()
    lung = render.render_view(st, "Lung", 2)
    bone = render.render_view(st, "Bone", 2)
    assert lung.shape == (64, 64, 3) and lung.dtype == np.uint8
    assert not np.array_equal(lung, bone)
    assert not np.array_equal(render.render_view(st, "Default", 0), render.render_view(st, "Default", 4))
    # out-of-range slices clamp instead of failing
    assert render.render_view(st, "Default", 99).shape == (64, 64, 3)


def test_render_view_saliency_and_downscale():
    st = make_study("CR", shape=(1200, 1000))
    plain = render.render_view(st)
    assert max(plain.shape[:2]) == render.MAX_VIEW_SIDE
    sal = np.zeros((16, 16), np.float32)
    sal[4:8, 4:8] = 1
    over = render.render_view(st, saliency=sal)
    assert over.shape == plain.shape and not np.array_equal(over, plain)
    # presets do not apply to non-CT
    assert np.array_equal(render.render_view(st, "Lung"), plain)


def test_link_citations():
    md = render.link_citations("A [E1] and [E7].", known={"E1"})
    assert "(#ev-E1)" in md and "[E7?]" in md


def test_evidence_html_escapes_and_shows_provenance():
    ledger = classifier_ledger()
    ledger.add("guideline", "search_guidelines", "<script>alert(1)</script>", quote="x")
    views = {e.id: evidence_ref(e) for e in ledger.items}
    out = render.evidence_html(views, cited={"E1"})
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert 'id="ev-E1"' in out and "P(normal) = 0.93" in out and "Not validated for supine films." in out
    assert "Adult frontal chest radiographs." in out and "Management of pneumothorax" in out


def test_evidence_ref_names_the_probability():
    ledger = Ledger()
    facts = {"model": "m", "label": "normal", "probabilities": {"normal": 0.95, "pneumonia": 0.05}}
    assert evidence_ref(ledger.add("classifier", "classify_study", "m", facts=dict(facts))).probability_of == "normal"
    given = evidence_ref(ledger.add("classifier", "classify_study", "m", facts={**facts, "probability": 0.05}))
    assert given.probability == 0.05 and given.probability_of == "pneumonia"
    named = {**facts, "probability": 0.05, "positive_label": "pneumonia"}
    assert evidence_ref(ledger.add("classifier", "classify_study", "m", facts=named)).probability_of == "pneumonia"


def test_trace_and_metadata_html():
    calls = [ToolCallRecord("classify_study", {"model": "pneumonia-cxr"}, 410.0, True, evidence_ids=("E1",)),
             ToolCallRecord("search_guidelines", {"query": "q"}, 1500.0, False, error="timeout")]
    out = render.trace_html(calls)
    assert "0.41 s" in out and "1.50 s" in out and "timeout" in out and "<td>E1</td>" in out
    marked = render.trace_html([ToolCallRecord("search_guidelines", {"query": "q"}, 5, True, auto=True),
                                ToolCallRecord("lung_rads_category", {"status": "new"}, 1, True,
                                               aligned=("status: baseline -> new <b>",))])
    assert marked.count('class="rc-auto"') == 2 and "status: baseline -&gt; new &lt;b&gt;" in marked
    assert "Burned-in annotation" in render.metadata_html(make_study(burned=True))
    assert "No study loaded" in render.metadata_html(None)


def test_summary_edit_round_trip():
    sections = (("Findings", "No pneumothorax [E1]."), ("Impression", "- Normal [E1].\n- Follow up [E2]."))
    assert render.text_to_sections(render.sections_to_text(sections)) == sections
    assert render.text_to_sections("free text [E1]") == (("Summary", "free text [E1]"),)
    with pytest.raises(InputError):
        render.text_to_sections("   \n")


# --- uploads and sessions ----------------------------------------------------------------------------
def test_stage_upload_limits(tmp_path):
    big = tmp_path / "big.dcm"
    big.write_bytes(b"x" * 2000)
    with pytest.raises(FileTooLargeError, match="limit"):
        stage_upload([big], tmp_path / "s", max_bytes=1000)
    with pytest.raises(InputError):
        stage_upload([], tmp_path, max_bytes=1000)
    with pytest.raises(InputError):
        stage_upload([tmp_path / "missing.dcm"], tmp_path, max_bytes=1000)


def test_stage_upload_zip_safe(tmp_path):
    z = tmp_path / "series.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../../evil.dcm", b"a")
        zf.writestr("series/IM0002", b"b")
        zf.writestr("__MACOSX/._IM0002", b"c")
    sess = tmp_path / "sess"
    sess.mkdir()
    out = stage_upload([z], sess, max_bytes=10_000)
    assert out.is_dir() and out.parent == sess
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 and all(".." not in n for n in names)
    assert not (tmp_path / "evil.dcm").exists()
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", b"\0" * 200_000)
    with pytest.raises(FileTooLargeError):
        stage_upload([bomb], sess, max_bytes=50_000)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(InputError):
        stage_upload([bad], sess, max_bytes=50_000)


def test_session_state_cleanup(tmp_path):
    s = SessionState(tmp_path)
    c1 = s.current
    c2 = s.new_case().case_id
    assert c1 != c2 and s.current == c2 and set(s.cases) == {c1, c2}
    assert s.dir.is_dir()
    cleanup_state(s)
    assert not s.dir.exists()


# --- the bind policy and launching ----------------------------------------------------------------
def test_bind_policy(settings):
    from agent.users import UserStore

    assert bind_policy("127.0.0.1", settings) is None
    assert bind_policy("localhost", settings) is None
    assert bind_policy("::1", settings) is None
    for host in ("0.0.0.0", "192.168.1.5", "example.org"):
        with pytest.raises(InputError, match="without users"):
            bind_policy(host, settings)
    UserStore(settings.users_path, rounds=4).add("dr_a", "a long password")
    auth = bind_policy("0.0.0.0", settings)
    assert auth is not None and auth("dr_a", "a long password") and not auth("dr_a", "nope nope")
    log = settings.audit_log_path.read_text()
    assert '"login"' in log and '"login_failed"' in log and "nope" not in log


def test_cli_ui_refuses_public_bind_without_users(settings, monkeypatch, capsys):
    from agent.cli import main
    from agent.commands import ui as cmd

    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(settings.data_dir))

    def boom(_settings):
        raise AssertionError("the agent must not be built before the bind check")

    monkeypatch.setattr(cmd, "make_agent", boom)
    assert main(["ui", "--host", "0.0.0.0", "--port", "7999"]) == 2
    assert "without users" in capsys.readouterr().err


def scripted_consultation(settings, steps, read_frames: bool = False) -> Consultation:
    """The real Consultation and tools over a scripted model (its own tool loop unless ``read_frames``)."""
    return Consultation(settings, backend=ScriptedBackend(steps), tools=real_tools(settings), read_frames=read_frames)


def test_build_ui_constructs(settings):
    demo = build_ui(scripted_consultation(settings, []), settings)
    assert isinstance(demo.rc_controller, UIController)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_launch_with_users_requires_login(settings):
    import httpx

    from agent.users import UserStore

    UserStore(settings.users_path, rounds=4).add("dr_a", "a long password")
    demo = build_ui(scripted_consultation(settings, []), settings)
    port = _free_port()
    launch(demo, settings, host="127.0.0.1", port=port, auth=bind_policy("127.0.0.1", settings), block=False)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            assert client.get("/config").status_code == 401
            assert client.post("/login", data={"username": "dr_a", "password": "wrong password"}).status_code >= 400
            assert client.post("/login", data={"username": "dr_a", "password": "a long password"}).status_code == 200
            assert client.get("/config").status_code == 200
            for secret in (settings.users_path, settings.audit_log_path, settings.integrity_key_file):
                assert client.get(f"/gradio_api/file={secret}").status_code in (403, 404)
    finally:
        demo.close()
    from agent.audit import AuditLog

    log = settings.audit_log_path.read_text()
    assert '"action":"login","case_id":null' in log or '"action":"login"' in log
    assert '"login_failed"' in log and "wrong password" not in log
    assert AuditLog.from_settings(settings).verify().ok


def test_session_files_are_not_served_without_login_when_users_exist(settings):
    """Exports (and any upload) live in the session folder; with users, no route serves them to a stranger."""
    import httpx

    from agent.users import UserStore

    UserStore(settings.users_path, rounds=4).add("dr_a", "a long password")
    demo = build_ui(scripted_consultation(settings, []), settings)
    sess = demo.rc_controller.session(None, "browser-x")
    secret = sess.dir / "exports" / "summary.md"
    secret.parent.mkdir(parents=True)
    secret.write_text("case summary")
    port = _free_port()
    launch(demo, settings, host="127.0.0.1", port=port, auth=bind_policy("127.0.0.1", settings), block=False)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as stranger:
            for route in (f"/gradio_api/file={secret}", f"/file={secret}", f"/gradio_api/file={sess.dir}"):
                assert stranger.get(route).status_code in (401, 403, 404), route
    finally:
        demo.close()


def test_launch_refuses_public_without_auth(settings):
    with pytest.raises(InputError):
        launch(object(), settings, host="0.0.0.0", port=1, auth=None, block=False)


# --- the controller over the real Consultation -------------------------------------------------------
def upload_png(ctl: UIController, sess: SessionState, path, tmp_path) -> str:
    import shutil

    copy = tmp_path / "gradio-copy.png"  # Gradio hands over its own copy; the controller deletes it
    shutil.copy(path, copy)
    msg = ctl.upload(sess, "dr_a", [copy])
    assert not copy.exists()
    return msg


def test_controller_turn_shows_evidence_ids_in_trace_and_audit(settings, tmp_path):
    """The bug this guards: the trace's evidence column and the audit's per-tool evidence ids were empty."""
    consult = scripted_consultation(settings, [
        call("classify_study", study="latest", model="pneumonia-cxr"),
        call("fleischner_followup", size_mm=7, nodule_type="solid", risk="low"),
        text("The classifier reads the film as normal [E1]. For the nodule, CT at 6-12 months, then consider "
             "CT at 18-24 months [E2]."),
        text("Normal film for pneumonia [E1]; nodule follow-up per Fleischner [E2]."),
    ])
    ctl = UIController(consult, settings)
    sess = ctl.session(None, "browser-1")
    assert upload_png(ctl, sess, shared_file("cxr/nih_00027426_000_no_finding.png"), tmp_path).startswith("✓")
    assert [p for p in sess.dir.rglob("*") if p.is_file()] == []  # the study is in memory; no copy on disk
    updates = list(ctl.ask(sess, "dr_a", "Pneumonia? And follow-up for a 7 mm solid nodule, low risk?"))
    final = updates[-1]
    assert final.trace_html is not None and "<td>E1</td>" in final.trace_html and "<td>E2</td>" in final.trace_html
    assert [c.evidence_ids for c in sess.case.tool_calls] == [("E1",), ("E2",)]
    assert final.evidence_html is not None and 'id="ev-E1"' in final.evidence_html
    assert final.viewer is not None and final.viewer.overlay_available  # the classifier's saliency map
    records = [json.loads(line) for line in settings.audit_log_path.read_text().splitlines()]
    by_action = {r["action"]: r for r in records}
    assert by_action["classify"]["evidence_ids"] == ["E1"] and by_action["calculate"]["evidence_ids"] == ["E2"]
    assert set(by_action["answer"]["evidence_ids"]) >= {"E2"}
    # the summary drafts, needs a logged-in clinician to sign, and exports
    panel = ctl.draft(sess, "dr_a")
    assert panel.markdown and "DRAFT" in panel.markdown and panel.edit_text and "## Findings" in panel.edit_text
    assert "⚠" in ctl.sign(sess, None).status_html
    assert "SIGNED" in ctl.sign(sess, "dr_a").status_html
    exported = ctl.export(sess, "dr_a", "md")
    assert exported.path is not None and "SIGNED by dr_a" in exported.path.read_text()
    consult.close()


def test_controller_waits_visibly_for_the_warm_up(settings, monkeypatch):
    release = threading.Event()

    def slow_hello(messages):
        release.wait(5)
        from agent.llm.base import ChatResult

        return ChatResult(text="Hi")

    from agent.services import KnowledgeService

    monkeypatch.setattr(KnowledgeService, "ensure_ready", lambda self: None)  # no corpus build here
    consult = scripted_consultation(settings, [slow_hello, text("Hello, how can I help?")])
    try:
        ctl = UIController(consult, settings)
        sess = ctl.session(None, "browser-2")
        consult.start_warm_up()
        steps = ctl.ask(sess, None, "Hello")
        first = next(steps)
        assert first.status_html is not None and STARTING in first.status_html
        release.set()
        rest = list(steps)
        assert "Hello, how can I help?" in rest[-1].chat[-1]["content"]
    finally:
        consult.close()


def test_controller_rejects_a_bad_upload_and_audits_it(settings, tmp_path):
    consult = scripted_consultation(settings, [])
    ctl = UIController(consult, settings)
    sess = ctl.session(None, "browser-3")
    bad = tmp_path / "Doe_John.dcm"
    bad.write_bytes(b"not a dicom file at all")
    msg = ctl.upload(sess, None, [bad])
    assert msg.startswith("⚠ Upload rejected") and not sess.case.studies
    log = settings.audit_log_path.read_text()
    assert '"upload_rejected"' in log and "Doe_John" not in log
    assert "draft a summary first" in ctl.export(sess, None, "md").status_html


def test_a_question_sent_during_a_turn_is_queued_and_answered_after(settings):
    """Issue 20's UI fault: a question sent while an answer was running was dropped. It is taken at once,
    shown as queued, and answered after the running one by the same drain."""
    from agent.llm.base import ChatResult

    release = threading.Event()

    def slow_first(messages):
        release.wait(10)
        return ChatResult(text="The first answer.")

    consult = scripted_consultation(settings, [slow_first, text("The second answer.")])
    ctl = UIController(consult, settings)
    sess = ctl.session(None, "browser-q")
    first: list = []
    worker = threading.Thread(target=lambda: first.extend(ctl.ask(sess, "dr_a", "The first question?")))
    worker.start()
    for _ in range(200):
        if sess.answering:
            break
        threading.Event().wait(0.05)
    queued = ctl.submit(sess, "The second question?")
    assert "Queued" in queued.chat[-1]["content"] and "1 question(s) queued" in queued.status_html
    assert list(ctl.drain(sess, "dr_a")) == []  # the running drain answers it; a second one does nothing
    release.set()
    worker.join(30)
    chat = [m["content"] for m in sess.case.chat]
    assert chat[0] == "The first question?" and "first answer" in chat[1]
    assert chat[2] == "The second question?" and "second answer" in chat[3]
    assert not sess.answering and sess.queue == []
    assert ctl.submit(sess, "   ").chat == sess.case.chat and sess.queue == []  # nothing to send: nothing queued
    consult.close()
