"""The real UI in a real browser (Debian chromium driven by Playwright).

The app runs in this process on a free loopback port: the real page, the real Consultation with the
real tools (imaging loader, classifiers with saliency, bundled knowledge base) and a scripted chat
model in place of the LLM (a policy that calls the tools, then cites what they returned), so the test
is about the page and the orchestration, not about a model's wording.

Screenshots go to $RADCONSULT_ARTEFACTS (default ci-artifacts/ui, git-ignored).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
import warnings
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, shared_file

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
CHROMIUM = os.environ.get("RADCONSULT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium not installed (apt-get install -y chromium)", allow_module_level=True)

QUESTION = "What do you see, and what does the guideline recommend?"
CHROME_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]
TIMEOUT_MS = 120_000


class PolicyBackend:
    """Scripted chat model: on a question, call classify_study (with saliency) and search_guidelines;
    after the tool results, answer citing the first evidence ids it was given, and echo any
    ``tag-XXXX`` word of the question so that concurrent sessions can tell their answers apart."""

    name = "scripted-policy"

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def chat(self, messages, tools=None, *, tool_choice="auto", on_token=None, max_tokens=None):
        from agent.llm.base import ChatResult, ToolCall

        last = messages[-1]
        if tool_choice != "none" and last["role"] == "user":
            return ChatResult(tool_calls=[
                ToolCall("classify_study", {"study": "latest", "saliency": True}, "c1"),
                ToolCall("search_guidelines", {"query": "pneumothorax management chest radiograph"}, "c2")])
        ids: list[str] = []
        tag = ""
        for m in messages:
            content = m.get("content") or ""
            if m["role"] == "tool" and not content.startswith("ERROR"):
                ids += re.findall(r"\[(E\d+)\]", content)
            if m["role"] == "user":
                found = re.findall(r"tag-[a-z0-9]+", content)
                tag = found[-1] if found else tag
                ids += re.findall(r"\[(E\d+)\]", content) if tool_choice == "none" else []
        ids = list(dict.fromkeys(ids)) or ["E1"]
        first, second = ids[0], ids[1] if len(ids) > 1 else ids[0]
        text = (f"The image classifier result is stated with its calibrated probability [{first}]. "
                f"The guideline passage gives the recommended management [{second}].")
        if tag:
            text += f" This answer is for {tag} [{first}]."
        if on_token:
            for word in text.split(" "):
                on_token(word + " ")
                time.sleep(0.01)
        from agent.llm.base import ChatResult

        return ChatResult(text=text)

    def close(self) -> None:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from agent.consultation import Consultation
    from agent.settings import Settings
    from agent.ui import build_ui, launch

    root = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CONFIG_HOME", str(root / "xdg"))
        mp.delenv("RADCONSULT_CONFIG", raising=False)
        settings = Settings(data_dir=root / "data", max_upload_bytes=64 * 1024 * 1024)
    agent = Consultation(settings, backend=PolicyBackend())
    demo = build_ui(agent, settings)
    port = _free_port()
    launch(demo, settings, host="127.0.0.1", port=port, auth=None, block=False)
    yield f"http://127.0.0.1:{port}/", settings
    demo.close()
    agent.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        yield b
        b.close()


def _artefacts() -> Path:
    path = Path(os.environ.get("RADCONSULT_ARTEFACTS", REPO_ROOT / "ci-artifacts" / "ui"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _open(browser, url):
    ctx = browser.new_context(viewport={"width": 1600, "height": 1000}, color_scheme="dark")
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#rc-upload")
    page.wait_for_function("document.querySelector('#rc-case-info') && "
                           "document.querySelector('#rc-case-info').innerText.includes('case-')")
    return ctx, page


def _ask(page, question: str) -> str:
    page.fill("#rc-question textarea", question)
    page.click("#rc-send")
    page.wait_for_function(
        "() => { const m = document.querySelectorAll('#rc-chat .message'); if (!m.length) return false;"
        " const t = m[m.length - 1].innerText; return /recommended management/.test(t) && /\\.\\s*$/.test(t.trim())"
        " && document.querySelectorAll('#rc-evidence .rc-ev').length > 0; }")
    msgs = page.locator("#rc-chat .message")
    return msgs.nth(msgs.count() - 1).inner_text()


def test_consultation_in_browser(app_url, browser):
    url, settings = app_url
    dcm = shared_file("cxr/siim_cxr_no_pneumothorax.dcm")
    ctx, page = _open(browser, url)
    try:
        assert "Decision support, not a diagnosis" in page.locator("#rc-disclaimer").inner_text()
        page.locator("#rc-upload input[type=file]").set_input_files(str(dcm))
        page.wait_for_function("document.querySelector('#rc-upload-msg').innerText.includes('Loaded')")
        assert "DICOM" in page.locator("#rc-upload-msg").inner_text()
        meta = page.locator("#rc-meta").inner_text()
        assert "CR" in meta and "CHEST" in meta.upper()
        assert "Patient key" in page.locator("#rc-case-info").inner_text()

        answer = _ask(page, QUESTION)
        cited = sorted(set(re.findall(r"E\d+", answer)))
        assert cited, answer
        links = page.locator("#rc-chat a[href^='#ev-E']")
        assert links.count() >= len(cited)
        for eid in cited:
            card = page.locator(f"#rc-evidence #ev-{eid}")
            assert card.count() == 1, f"evidence panel lacks {eid}"
            assert card.inner_text().strip()
        ev_text = page.locator("#rc-evidence").inner_text()
        assert "British Thoracic Society" in ev_text or "guideline" in ev_text.lower()
        # tool trace with timings
        page.click("#rc-trace-acc button, #rc-trace-acc .label-wrap")
        trace = page.locator("#rc-trace").inner_text()
        assert "search_guidelines" in trace and re.search(r"\d+\.\d\d s", trace)
        # saliency overlay from the classifier the answer cited (set in the same update as the final
        # answer, so a short wait suffices). Which bundles accept an adult CR chest image is up to the
        # classifier registry; when none does, the trace says so and there is nothing to overlay.
        assert page.locator("#rc-viewer img").count() == 1
        if page.locator("#rc-evidence .rc-kind", has_text="classifier").count():
            page.wait_for_function("document.querySelector('#rc-overlay input').checked", timeout=10_000)
            assert "Saliency overlay" in page.locator("#rc-overlay-caption").inner_text()
        else:
            assert "classify_study" in trace
            warnings.warn("no bundled classifier accepted the CR chest image: saliency overlay not checked "
                          "in the browser (covered by test_ui.py::test_classifier_saliency_real)", stacklevel=1)

        page.click("#rc-draft")
        page.wait_for_function("document.querySelector('#rc-summary-status').innerText.includes('DRAFT')")
        summary = page.locator("#rc-summary").inner_text()
        assert "Decision support, not a diagnosis" in summary and "intended use" in summary.lower()
        # the clinician edits the draft before export: same version, new content
        page.click("#rc-edit-acc button, #rc-edit-acc .label-wrap")
        edit = page.locator("#rc-edit textarea")
        assert "## Impression" in edit.input_value()
        edit.fill(edit.input_value() + "\n\n## Addendum\nReviewed with the clinical team.")
        page.click("#rc-save-edit")
        page.wait_for_function("document.querySelector('#rc-summary').innerText.includes('Reviewed with the clinical')")
        assert "v1" in page.locator("#rc-summary-status").inner_text()

        for button, suffix in (("#rc-export-pdf", ".pdf"), ("#rc-export-sr", "_SR.dcm")):
            page.click(button)
            link = page.locator(f"#rc-export-file a[href*='{suffix}']").first
            link.wait_for()
            href = link.get_attribute("href")
            data = page.request.get(href if href.startswith("http") else url.rstrip("/") + href).body()
            if suffix == ".pdf":
                assert data.startswith(b"%PDF")
            else:
                import io

                import pydicom

                ds = pydicom.dcmread(io.BytesIO(data))
                assert ds.Modality == "SR" and ds.VerificationFlag == "UNVERIFIED"
        # signing without a logged-in user is refused (no users on loopback), the draft stays a draft
        page.click("#rc-sign")
        page.wait_for_function("document.querySelector('#rc-summary-status').innerText.includes('logged-in')")
        page.screenshot(path=str(_artefacts() / "consultation.png"), full_page=True)
        # nothing outside the session directories is served
        for secret in (settings.users_path, settings.audit_log_path, Path("/etc/passwd")):
            resp = page.request.get(url + "gradio_api/file=" + str(secret))
            assert resp.status in (403, 404), f"{secret} served with status {resp.status}"
    except Exception:
        page.screenshot(path=str(_artefacts() / "consultation-failure.png"), full_page=True)
        raise
    finally:
        ctx.close()
    audit = settings.audit_log_path.read_text()
    for action in ("upload", "answer", "summary", "export"):
        assert f'"action":"{action}"' in audit
    assert QUESTION not in audit
    from agent.audit import verify

    assert verify(settings.audit_log_path).ok


def test_three_sessions_get_their_own_answers(app_url, browser):
    url, _ = app_url
    opened = [_open(browser, url) for _ in range(3)]
    try:
        tags = ["tag-alpha", "tag-bravo", "tag-charlie"]
        cases = [page.locator("#rc-case-info").inner_text() for _, page in opened]
        assert len(set(cases)) == 3, "each browser session must start its own case"
        for (_, page), tag in zip(opened, tags, strict=True):
            page.fill("#rc-question textarea", f"Which guideline applies here, {tag}?")
            page.click("#rc-send")
        for (_, page), tag in zip(opened, tags, strict=True):
            page.wait_for_function(
                f"() => {{ const m = document.querySelectorAll('#rc-chat .message');"
                f" return m.length && m[m.length-1].innerText.includes('for {tag}'); }}")
            chat = page.locator("#rc-chat").inner_text()
            assert all(other not in chat for other in tags if other != tag)
    finally:
        for ctx, _ in opened:
            ctx.close()
