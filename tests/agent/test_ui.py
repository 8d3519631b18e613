"""UI logic without a browser: rendering, citations, evidence panel, uploads, the bind policy.

``ScriptedAgent`` is a scripted stand-in for agent/consultation.py, used only where a test is
about the UI's orchestration (streaming, evidence, trace, summary); the browser test uses it too
when the real agent is not available.
"""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass, field

import numpy as np
import pytest

from agent import ui
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


# ---------------------------------------------------------------------------------------------
# a scripted agent (orchestration only)
# ---------------------------------------------------------------------------------------------
@dataclass
class FakeTurn:
    answer: str
    evidence: list = field(default_factory=list)
    tool_calls: list = field(default_factory=list)
    unsupported: list = field(default_factory=list)
    findings: list = field(default_factory=list)


@dataclass
class FakeSummary:
    case_id: str
    findings: str
    impression: str
    recommendations: str

    def to_dict(self):
        return {"findings": self.findings, "impression": self.impression,
                "recommendations": self.recommendations}


class ScriptedAgent:
    """Answers every question with two cited evidence items and a saliency map; streams words."""

    model_name = "scripted-fake"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.images: dict[str, list] = {}
        self.asked: list[tuple[str, str]] = []

    def ask(self, case_id, question, images=None, patient=None, streaming=False):
        self.images.setdefault(case_id, []).extend(images or [])
        self.asked.append((case_id, question))
        study = (self.images.get(case_id) or [None])[-1]
        shape = study.display.shape[-2:] if study is not None else (32, 32)
        yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
        sal = np.exp(-(((yy - shape[0] * 0.4) ** 2 + (xx - shape[1] * 0.6) ** 2) / (0.02 * shape[0] * shape[1])))
        tag = case_id[-4:]
        answer = (f"No pneumothorax is suggested by the classifier [E1]. For case {tag}, the guideline advises "
                  f"observation of small pneumothoraces [E2].")
        turn = FakeTurn(
            answer=answer,
            evidence=[{"id": "E1", "kind": "classifier", "source": "ptx-densenet", "title": "Pneumothorax",
                       "facts": {"model": "ptx-densenet", "version": "1.0", "label": "normal",
                                 "probabilities": {"normal": 0.93, "pneumothorax": 0.07},
                                 "caution": "Not validated for supine films.",
                                 "model_card": {"intended_use": "Adult frontal chest radiographs."}}},
                      {"id": "E2", "kind": "guideline", "source": "BTS pleural disease guideline 2023",
                       "section": "Management of pneumothorax", "title": "BTS 2023",
                       "quote": "Small pneumothoraces without symptoms may be observed."}],
            tool_calls=[{"name": "classify_image", "args": {"model": "ptx-densenet"}, "seconds": 0.41,
                         "evidence_ids": ["E1"]},
                        {"name": "search_guidelines", "args": {"query": "pneumothorax management"},
                         "seconds": 0.12, "evidence_ids": ["E2"]}],
            findings=[{"label": "pneumothorax", "saliency": sal}])
        if not streaming:
            return turn

        def stream():
            for word in answer.split(" "):
                if self.delay_s:
                    time.sleep(self.delay_s)
                yield word + " "
            yield turn
        return stream()

    def summary(self, case_id):
        return FakeSummary(case_id, "No pneumothorax [E1].", "Normal chest radiograph for the question [E1].",
                           "Observe per guideline [E2].")


# ---------------------------------------------------------------------------------------------
def test_render_view_windows_and_slices():
    st = make_study()
    lung = ui.render_view(st, "Lung", 2)
    bone = ui.render_view(st, "Bone", 2)
    assert lung.shape == (64, 64, 3) and lung.dtype == np.uint8
    assert not np.array_equal(lung, bone)
    assert not np.array_equal(ui.render_view(st, "Default", 0), ui.render_view(st, "Default", 4))
    # out-of-range slices clamp instead of failing
    assert ui.render_view(st, "Default", 99).shape == (64, 64, 3)


def test_render_view_saliency_and_downscale():
    st = make_study("CR", shape=(1200, 1000))
    plain = ui.render_view(st)
    assert max(plain.shape[:2]) == ui.MAX_VIEW_SIDE
    sal = np.zeros((16, 16), np.float32)
    sal[4:8, 4:8] = 1
    over = ui.render_view(st, saliency=sal)
    assert over.shape == plain.shape and not np.array_equal(over, plain)
    # presets do not apply to non-CT
    assert np.array_equal(ui.render_view(st, "Lung"), plain)


def test_link_citations():
    md = ui.link_citations("A [E1] and [E7].", known={"E1"})
    assert "(#ev-E1)" in md and "[E7?]" in md


def test_evidence_html_escapes_and_shows_provenance():
    views = {e["id"]: ui.evidence_view(e) for e in ScriptedAgent().ask("case-x", "q").evidence}
    views["E3"] = ui.evidence_view({"id": "E3", "kind": "guideline", "source": "<script>alert(1)</script>",
                                    "quote": "x"})
    out = ui.evidence_html(views, cited={"E1"})
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert 'id="ev-E1"' in out and "P(normal) = 0.93" in out and "Not validated for supine films." in out
    assert "Adult frontal chest radiographs." in out and "Management of pneumothorax" in out


def test_evidence_view_names_the_probability():
    base = {"id": "E1", "kind": "classifier", "facts": {"model": "m", "label": "normal",
                                                        "probabilities": {"normal": 0.95, "pneumonia": 0.05}}}
    assert ui.evidence_view(base)["probability_of"] == "normal"
    base["facts"]["probability"] = 0.05  # P(positive label) given directly
    v = ui.evidence_view(base)
    assert v["probability"] == 0.05 and v["probability_of"] == "pneumonia"
    base["facts"]["positive_label"] = "pneumonia"
    assert ui.evidence_view(base)["probability_of"] == "pneumonia"


def test_trace_and_metadata_html():
    calls = [ui.tool_call_view(c) for c in ScriptedAgent().ask("c", "q").tool_calls]
    calls.append(ui.tool_call_view({"name": "kb", "duration_ms": 1500, "error": "timeout"}))
    out = ui.trace_html(calls)
    assert "0.41 s" in out and "1.50 s" in out and "timeout" in out
    marked = ui.trace_html([ui.tool_call_view({"name": "search_guidelines", "args": {"query": "q"}, "ms": 5, "ok": True,
                                               "auto": True}),
                            ui.tool_call_view({"name": "lung_rads_category", "args": {"status": "new"}, "ms": 1,
                                               "ok": True, "aligned": ["status: baseline -> new <b>"]})])
    assert marked.count('class="rc-auto"') == 2 and "status: baseline -&gt; new &lt;b&gt;" in marked
    assert "Burned-in annotation" in ui.metadata_html(make_study(burned=True))
    assert "No study loaded" in ui.metadata_html(None)


def test_stage_upload_limits(tmp_path):
    big = tmp_path / "big.dcm"
    big.write_bytes(b"x" * 2000)
    with pytest.raises(FileTooLargeError, match="limit"):
        ui.stage_upload([big], tmp_path / "s", max_bytes=1000)
    with pytest.raises(InputError):
        ui.stage_upload([], tmp_path, max_bytes=1000)
    with pytest.raises(InputError):
        ui.stage_upload([tmp_path / "missing.dcm"], tmp_path, max_bytes=1000)


def test_stage_upload_zip_safe(tmp_path):
    z = tmp_path / "series.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../../evil.dcm", b"a")
        zf.writestr("series/IM0002", b"b")
        zf.writestr("__MACOSX/._IM0002", b"c")
    sess = tmp_path / "sess"
    sess.mkdir()
    out = ui.stage_upload([z], sess, max_bytes=10_000)
    assert out.is_dir() and out.parent == sess
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 and all(".." not in n for n in names)
    assert not (tmp_path / "evil.dcm").exists()
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", b"\0" * 200_000)
    with pytest.raises(FileTooLargeError):
        ui.stage_upload([bomb], sess, max_bytes=50_000)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(InputError):
        ui.stage_upload([bad], sess, max_bytes=50_000)


def test_session_state_cleanup(tmp_path):
    s = ui.SessionState(tmp_path)
    c1 = s.current
    c2 = s.new_case().case_id
    assert c1 != c2 and s.current == c2 and set(s.cases) == {c1, c2}
    assert s.dir.is_dir()
    ui._cleanup_state(s)
    assert not s.dir.exists()


def test_bind_policy(settings):
    from agent.users import UserStore

    assert ui.bind_policy("127.0.0.1", settings) is None
    assert ui.bind_policy("localhost", settings) is None
    assert ui.bind_policy("::1", settings) is None
    for host in ("0.0.0.0", "192.168.1.5", "example.org"):
        with pytest.raises(InputError, match="without users"):
            ui.bind_policy(host, settings)
    UserStore(settings.users_path, rounds=4).add("dr_a", "a long password")
    auth = ui.bind_policy("0.0.0.0", settings)
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


def test_build_ui_constructs(settings):
    demo = ui.build_ui(ScriptedAgent(), settings)
    assert demo is not None and demo.rc_exports_root == settings.cache_dir / "ui-sessions"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_launch_with_users_requires_login(settings):
    import httpx

    from agent.users import UserStore

    UserStore(settings.users_path, rounds=4).add("dr_a", "a long password")
    demo = ui.build_ui(ScriptedAgent(), settings)
    port = _free_port()
    ui.launch(demo, settings, host="127.0.0.1", port=port, auth=ui.bind_policy("127.0.0.1", settings), block=False)
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


def test_launch_refuses_public_without_auth(settings):
    with pytest.raises(InputError):
        ui.launch(object(), settings, host="0.0.0.0", port=1, auth=None, block=False)


def test_classifier_saliency_real(settings):
    """The overlay path with a real bundled classifier (breast-us) on a real BreastMNIST image."""
    import io

    from PIL import Image

    from tests.conftest import shared_file
    from tools.imaging import load

    data = np.load(shared_file("medmnist/breastmnist.npz"))
    buf = io.BytesIO()
    Image.fromarray(data["test_images"][0]).resize((224, 224)).save(buf, format="PNG")
    case = ui.CaseState("case-sal")
    case.studies.append(load(buf.getvalue(), settings))
    assert ui._classifier_saliency(case, settings) == (None, "")  # nothing cited yet: no overlay
    case.evidence["E1"] = {"id": "E1", "kind": "classifier", "model": "breast-us", "label": None}
    sal, label = ui._classifier_saliency(case, settings)
    assert sal is not None and sal.shape == (224, 224) and "breast-us" in label
    assert float(sal.max()) > float(sal.min())
    view = ui.render_view(case.study, saliency=sal)
    assert not np.array_equal(view, ui.render_view(case.study))


def test_summary_edit_round_trip():
    sections = (("Findings", "No pneumothorax [E1]."), ("Impression", "- Normal [E1].\n- Follow up [E2]."))
    assert ui.text_to_sections(ui.sections_to_text(sections)) == sections
    assert ui.text_to_sections("free text [E1]") == (("Summary", "free text [E1]"),)
    with pytest.raises(InputError):
        ui.text_to_sections("   \n")
