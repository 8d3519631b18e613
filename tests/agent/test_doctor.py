"""`radconsult doctor`: the whole table from the real command (the packaged 0.5B model asked in a worker
process, the real bundles, a real knowledge base), and each failure it must name with what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from agent.doctor import (
    check_audit,
    check_chroma_server,
    check_data_dir,
    check_llm,
    check_llm_server,
    check_pacs,
    run_checks,
)
from agent.llm.cpu import cpu_info
from tests.agent.llm_fixtures import qwen_path  # noqa: F401 - fixture
from tests.orthanc import PacsStory, story_fixture

LINES = ["cpu", "llm threads", "llm server", "llm", "classifier brain-mri-tumour", "classifier breast-us",
         "classifier pneumonia-cxr", "knowledge base", "chroma server", "pacs", "data directory", "audit log"]


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Iterator[PacsStory]:
    yield from story_fixture(tmp_path_factory, "orthanc-doctor")


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The real command, with only the RADCONSULT_* settings given here (none inherited)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RADCONSULT_")}
    return subprocess.run([sys.executable, "-m", "agent.cli", "doctor", *args], capture_output=True, text=True,
                          env={**clean, **env}, timeout=600)


def test_doctor_checks_every_part_of_a_working_machine(qwen_path, tmp_path):  # noqa: F811
    env = {"RADCONSULT_DATA_DIR": str(tmp_path / "data"), "RADCONSULT_LLM": f"gguf:{qwen_path}"}
    proc = doctor(env, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    by_name = {c["name"]: c for c in report["checks"]}
    assert list(by_name) == LINES
    assert by_name["llm"]["status"] == "ok" and "worker process" in by_name["llm"]["detail"]
    assert by_name["knowledge base"]["status"] == "ok" and "search answered" in by_name["knowledge base"]["detail"]
    assert all(by_name[f"classifier {n}"]["status"] == "ok" for n in ("brain-mri-tumour", "breast-us",
                                                                      "pneumonia-cxr"))
    assert {by_name[n]["status"] for n in ("chroma server", "pacs", "llm server")} == {"skip"}
    repack = "off" if cpu_info().has_amx else "on"
    assert f"weight repack {repack}" in by_name["llm threads"]["detail"]
    # the table form: one line per check, and the verdict
    text = doctor(env, "--no-llm")
    assert text.returncode == 0
    lines = text.stdout.strip().splitlines()
    assert lines[-1].startswith("all ") and "checks passed" in lines[-1]
    assert [ln.split()[0] for ln in lines[:-2]] == ["ok", "ok", "-", "ok", "ok", "ok", "ok", "-", "-", "ok", "ok"]


def test_a_crashing_runtime_is_reported_not_suffered(qwen_path, settings):  # noqa: F811
    if not cpu_info().has_amx:
        pytest.skip("this CPU has no AMX: llama.cpp's repacked weights do not crash here")
    check = check_llm(settings.model_copy(update={"llm": f"gguf:{qwen_path}", "llm_repack": "on"}))
    assert check.status == "fail" and "SIGSEGV" in check.detail and "RADCONSULT_LLM_REPACK=off" in check.fix


def test_a_model_file_that_is_not_a_model(settings, tmp_path):
    junk = tmp_path / "model.gguf"
    junk.write_bytes(b"not a gguf file at all" * 100)
    check = check_llm(settings.model_copy(update={"llm": f"gguf:{junk}"}))
    assert check.status == "fail" and "model.gguf" in check.detail and check.fix


def test_a_server_that_is_down(settings):
    s = settings.model_copy(update={"llm": "openai:http://127.0.0.1:9/v1#qwen", "llm_timeout_s": 5,
                                    "chroma_url": "http://127.0.0.1:9"})
    assert check_llm_server(s).status == "fail" and "not reachable" in check_llm_server(s).detail
    assert check_llm(s).status == "fail" and "start the server" in check_llm(s).fix
    assert check_chroma_server(s).status == "fail" and "chroma run" in check_chroma_server(s).fix


def test_a_data_directory_that_cannot_be_written(settings, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    check = check_data_dir(settings.model_copy(update={"data_dir": blocker / "data"}))
    assert check.status == "fail" and "RADCONSULT_DATA_DIR" in check.fix
    assert check_data_dir(settings).status in ("ok", "warn")


def test_a_tampered_audit_log(settings):
    from agent.audit import AuditLog

    log = AuditLog.from_settings(settings)
    log.append("answer", user="dr_a", case_id="c1", details={"n": 1})
    log.append("answer", user="dr_a", case_id="c1", details={"n": 2})
    assert check_audit(settings).status == "ok"
    text = settings.audit_log_path.read_text()
    settings.audit_log_path.write_text(text.replace('"n": 1', '"n": 7').replace('"n":1', '"n":7'))
    check = check_audit(settings)
    assert check.status == "fail" and "audit verify" in check.fix


def test_the_pacs_echo_with_right_and_wrong_credentials(settings, story, tmp_path):
    good = settings.model_copy(update={"pacs_url": story.server.dicomweb_url, "pacs_auth": "basic",
                                       "pacs_auth_file": story.credential_file(tmp_path)})
    assert check_pacs(good).status == "ok"
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    bad = good.model_copy(update={"pacs_auth_file": story.credential_file(wrong, password="not-it")})
    check = check_pacs(bad)
    assert check.status == "fail" and "credential" in check.fix
    down = good.model_copy(update={"pacs_url": "http://127.0.0.1:9/dicom-web", "pacs_timeout_s": 3})
    assert check_pacs(down).status == "fail"


def test_no_check_raises_even_when_everything_is_broken(settings, tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    s = settings.model_copy(update={"llm": "openai:http://127.0.0.1:9/v1#m", "llm_timeout_s": 3,
                                    "chroma_url": "http://127.0.0.1:9", "pacs_url": "http://127.0.0.1:9/dw",
                                    "pacs_timeout_s": 3, "data_dir": blocker / "d"})
    checks = run_checks(s)
    assert {c.status for c in checks} >= {"fail"}
    assert all(c.fix for c in checks if c.status == "fail")
