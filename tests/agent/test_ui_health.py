"""The start-up checks `radconsult ui` runs after its warm-up, and the banner the page shows."""

from __future__ import annotations

from agent.doctor import Check
from agent.ui import UIController
from agent.ui.health import StartupChecks
from tests.agent.fakes import ScriptedBackend, real_tools


def test_banner_lists_each_failure_with_what_to_do():
    health = StartupChecks()
    assert health.banner_html() == "" and not health.done  # nothing shown while the checks run
    health.run(lambda: [Check("cpu", "ok", "fine"),
                        Check("llm", "fail", "gguf:x: a crash in its native code, SIGSEGV <b>",
                              "set RADCONSULT_LLM_REPACK=off"),
                        Check("pacs", "warn", "slow", "check the network")])
    banner = health.banner_html()
    assert health.done and "1 start-up check(s) failed" in banner
    assert "SIGSEGV &lt;b&gt;" in banner and "RADCONSULT_LLM_REPACK=off" in banner
    assert "cpu" not in banner and "slow" not in banner  # only failures reach the page


def test_no_banner_when_every_check_passes():
    health = StartupChecks()
    health.run(lambda: [Check("cpu", "ok", "fine"), Check("pacs", "skip", "none")])
    assert health.done and health.banner_html() == ""


def test_checks_that_raise_are_a_failure_not_a_crash():
    health = StartupChecks()

    def broken() -> list[Check]:
        raise RuntimeError("boom")

    health.run(broken)
    assert "start-up checks" in health.banner_html() and "boom" in health.banner_html()


def test_the_checks_run_after_the_warm_up_in_the_background():
    import threading

    ready = threading.Event()
    health = StartupChecks()
    thread = health.start(ready.wait, lambda: [Check("llm", "fail", "down", "start it")])
    assert not health.done
    ready.set()
    thread.join(5)
    assert health.done and "down" in health.banner_html()


def test_controller_shows_the_banner(settings):
    from agent.consultation import Consultation

    consult = Consultation(settings, backend=ScriptedBackend([]), tools=real_tools(settings), read_frames=False)
    health = StartupChecks()
    ctl = UIController(consult, settings, health)
    assert ctl.health_banner() == ("", False)
    health.run(lambda: [Check("knowledge base", "fail", "damaged", "radconsult kb build --rebuild")])
    banner, done = ctl.health_banner()
    assert done and "kb build --rebuild" in banner
    assert UIController(consult, settings).health_banner() == ("", True)  # no checks: nothing to wait for
    consult.close()
