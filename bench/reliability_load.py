"""Load: N concurrent browser sessions (headless Chromium, Playwright) against the real page and the real
Consultation for a while, measuring errors, p50/p95 turn latency, the server's memory growth, and whether
anything leaked between sessions (each session's answers must carry its own tag and no other session's).

    python bench/reliability_load.py [--sessions 8] [--minutes 10]               # scripted chat model
    python bench/reliability_load.py --sessions 2 --minutes 10 --llm gguf:qwen2.5-coder-1.5b

The scripted model calls the real tools (a real classifier on an uploaded image, the real knowledge base)
and echoes the session's tag; the page, the queue, the sessions and the agent are all real. The baseline in
the same run is one session alone, so the table gives the slowdown under load as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.llm.base import ChatResult, TokenCallback, ToolCall, ToolSchema  # noqa: E402

CHROMIUM = os.environ.get("RADCONSULT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]
DONE = "document.querySelector('#rc-turn-status .rc-turn-done') !== null"


class EchoBackend:
    """A scripted model: retrieves, then answers citing the evidence and echoing the question's tag."""

    name = "scripted-echo"

    def chat(self, messages: list[dict[str, Any]], tools: list[ToolSchema] | None = None, *,
             tool_choice: str = "auto", on_token: TokenCallback | None = None,
             max_tokens: int | None = None) -> ChatResult:
        if tool_choice not in ("auto", "none"):
            return ChatResult()  # the case frame: read from the words
        if tool_choice == "auto" and messages[-1]["role"] == "user":
            return ChatResult(tool_calls=[ToolCall("search_guidelines", {"query": "nodule follow-up"}, "c1")])
        tags = [t for m in messages if m["role"] == "user" for t in re.findall(r"tag-[a-z0-9-]+", str(m["content"]))]
        ids = [i for m in messages if m["role"] == "tool" for i in re.findall(r"\[(E\d+)\]", str(m["content"]))]
        text = f"The guideline passage is cited [{ids[-1] if ids else 'E1'}]. This answer is for {tags[-1] if tags else '?'}."
        if on_token:
            on_token(text)
        return ChatResult(text=text)

    def close(self) -> None:
        return None


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(llm: str | None, root: Path) -> tuple[Any, Any, str]:
    from agent.consultation import Consultation
    from agent.settings import Settings
    from agent.ui import build_ui, launch

    settings = Settings(data_dir=root / "data", **({"llm": llm} if llm else {}))
    agent = Consultation(settings, backend=None if llm else EchoBackend())
    agent.warm_up()
    demo = build_ui(agent, settings)
    port = _free_port()
    launch(demo, settings, host="127.0.0.1", port=port, auth=None, block=False)
    return demo, agent, f"http://127.0.0.1:{port}/"


async def session(browser: Any, url: str, name: str, deadline: float, results: dict[str, Any],
                  timeout_ms: int) -> None:
    ctx = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await ctx.new_page()
    page.set_default_timeout(timeout_ms)
    rec = results[name] = {"turns": [], "errors": [], "leaks": []}
    try:
        await page.goto(url)
        await page.wait_for_selector("#rc-question textarea")
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            tag = f"tag-{name}-{n}"
            t0 = time.perf_counter()
            await page.fill("#rc-question textarea", f"Which guideline applies here, {tag}?")
            await page.click("#rc-send")
            try:  # the turn is over when its answer (with its tag) is shown and the status says so
                await page.wait_for_function(
                    "tag => { const m = document.querySelectorAll('#rc-chat .message');"
                    " return m.length && m[m.length - 1].innerText.includes(tag) && " + DONE + "; }",
                    arg=tag, timeout=timeout_ms)
            except Exception as exc:  # noqa: BLE001 - a timeout is an error of the run, counted
                rec["errors"].append(f"{tag}: {type(exc).__name__}")
                continue
            rec["turns"].append(time.perf_counter() - t0)
            msgs = page.locator("#rc-chat .message")
            last = await msgs.nth(await msgs.count() - 1).inner_text()
            if tag not in last or "⚠" in last:
                rec["errors"].append(f"{tag}: answer without its tag or with an error: {last[:120]}")
            others = set(re.findall(r"tag-(s\d+)-\d+", await page.locator("#rc-chat").inner_text())) - {name}
            if others:
                rec["leaks"].append(f"{tag}: saw {sorted(others)}")
    finally:
        await ctx.close()


async def drive(url: str, sessions: int, minutes: float, timeout_ms: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    results: dict[str, Any] = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        deadline = time.perf_counter() + minutes * 60
        await asyncio.gather(*(session(browser, url, f"s{i}", deadline, results, timeout_ms) for i in range(sessions)))
        await browser.close()
    return results


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row for the baseline (one session) and one for the load; returns the rows."""
    root = Path(tempfile.mkdtemp(prefix="rc-load-"))
    demo, agent, url = serve(args.llm, root)
    rows = []
    try:
        for label, n, minutes in (("1 session (baseline)", 1, min(args.minutes, 1.0)),
                                  (f"{args.sessions} sessions", args.sessions, args.minutes)):
            rss0 = _rss_mb()
            t0 = time.perf_counter()
            res = asyncio.run(drive(url, n, minutes, args.timeout_s * 1000))
            turns = [t for r in res.values() for t in r["turns"]]
            rows.append({"run": label, "sessions": n, "minutes": round((time.perf_counter() - t0) / 60, 1),
                         "turns": len(turns), "errors": sum(len(r["errors"]) for r in res.values()),
                         "leaks": sum(len(r["leaks"]) for r in res.values()),
                         "p50_s": round(statistics.median(turns), 2) if turns else None,
                         "p95_s": round(sorted(turns)[max(0, round(0.95 * (len(turns) - 1)))], 2) if turns else None,
                         "rss_growth_mb": round(_rss_mb() - rss0, 1),
                         "first_errors": [e for r in res.values() for e in r["errors"] + r["leaks"]][:5]})
    finally:
        demo.close()
        agent.close()
        shutil.rmtree(root, ignore_errors=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--llm", default=None, help="a RADCONSULT_LLM value; default: the scripted echo model")
    ap.add_argument("--timeout-s", type=int, default=600)
    args = ap.parse_args()
    rows = run(args)
    base = rows[0]["p50_s"] or float("nan")
    print(f"model {args.llm or 'scripted-echo'}; run id {uuid.uuid4().hex[:6]}")
    print("| run | sessions | minutes | turns | errors | leaks | p50 s | p95 s | p50 vs 1 session | RSS growth MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{(r['p50_s'] or float('nan')) / base:.1f}x" if r["p50_s"] else "-"
        print(f"| {r['run']} | {r['sessions']} | {r['minutes']} | {r['turns']} | {r['errors']} | {r['leaks']} | "
              f"{r['p50_s']} | {r['p95_s']} | {ratio} | {r['rss_growth_mb']} |")
        for e in r["first_errors"]:
            print(f"  {e}")
    return 0 if all(r["errors"] == 0 and r["leaks"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
