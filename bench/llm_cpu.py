"""The embedded LLM on this CPU: prompt-eval and generation tokens/s with and without weight repacking.

Each configuration runs in its own child process, so one that crashes (llama.cpp's AMX repack on CPUs with
AMX) is reported as a crash and the table goes on. The baseline is what radconsult chooses on this machine
(``RADCONSULT_LLM_REPACK=auto``), measured in the same run; other rows are ratios against it. Runs of the
configurations are interleaved and the median of ``--runs`` is shown.

    python bench/llm_cpu.py [--runs 3] [--models qwen2.5-coder-0.5b,qwen2.5-coder-1.5b] [--threads 2]
                            [--runtime NAME=SITE_DIR ...]

``--runtime`` adds another llama-cpp-python build (a folder its wheel was installed into with
``pip install --target``), e.g. one built without the AMX path:
``CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AMX_INT8=OFF ..."``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = ("A 64-year-old former smoker (30 pack-years, quit 8 years ago) has a 7 mm solid nodule in the right "
          "upper lobe on a CT of the chest done for cough. No prior imaging is available. ")
N_PROMPT = 512
N_GEN = 64


def child(model: str, threads: int, repack: bool) -> dict[str, float]:
    """Load ``model`` and time one prompt of N_PROMPT tokens and N_GEN greedy tokens (runs in a child)."""
    import time

    from agent.llm.llama_handle import LlamaHandle, load_llama

    t0 = time.perf_counter()
    llm = load_llama(model, repack=repack, n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=512,
                     verbose=False)
    load_s = time.perf_counter() - t0
    tokens = llm.tokenize((PROMPT * 40).encode(), add_bos=False)[:N_PROMPT]
    handle = LlamaHandle(llm)
    t0 = time.perf_counter()
    handle.eval(tokens, 0)
    pp = len(tokens) / (time.perf_counter() - t0)
    nxt = handle.argmax(-1)
    t0 = time.perf_counter()
    for _ in range(N_GEN):
        handle.decode([nxt], logits_all=False)
        nxt = handle.argmax(-1)
    tg = N_GEN / (time.perf_counter() - t0)
    return {"load_s": load_s, "pp": pp, "tg": tg}


def run_one(model: Path, threads: int, repack: bool, site: str | None) -> dict[str, float] | str:
    env = dict(os.environ)
    if site:
        env["PYTHONPATH"] = os.pathsep.join([site, str(ROOT)])
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(model), str(threads), "on" if repack else "off"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        if proc.returncode < 0:
            return f"crashed ({signal.Signals(-proc.returncode).name})"
        return f"failed (status {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, model, threads, repack = sys.argv
        print(json.dumps(child(model, int(threads), repack == "on")))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--models", default="qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--runtime", action="append", default=[], metavar="NAME=SITE_DIR")
    args = ap.parse_args()

    from agent.llm import packaged
    from agent.llm.cpu import cpu_info, repack_weights
    from agent.settings import Settings

    info = cpu_info()
    chosen = repack_weights("auto", info)
    print(f"CPU: {info.model}; {info.cores} cores; {', '.join(info.features) or 'no AVX2'}; "
          f"radconsult's choice (auto): repack {'on' if chosen else 'off'}; {args.threads} threads")
    runtimes: list[tuple[str, str | None]] = [("installed", None)]
    runtimes += [tuple(r.split("=", 1)) for r in args.runtime]  # type: ignore[misc]
    configs = [(rt, site, repack) for rt, site in runtimes for repack in (False, True)]
    cache = Settings().cache_dir
    print("| model | runtime | weight repack | load s | prompt eval tok/s | generation tok/s | vs baseline (pp / tg) |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for name in args.models.split(","):
        path = packaged.resolve(name, cache)
        results: dict[tuple[str, bool], list[dict[str, float]] | str] = {}
        for _ in range(args.runs):
            for rt, site, repack in configs:
                key = (rt, repack)
                if isinstance(results.get(key), str):
                    continue  # it crashed once: it will crash again
                out = run_one(path, args.threads, repack, site)
                if isinstance(out, str):
                    results[key] = out
                else:
                    results.setdefault(key, []).append(out)  # type: ignore[union-attr]
        base = results.get(("installed", chosen))
        for (rt, repack), runs in results.items():
            mark = " (baseline: chosen)" if rt == "installed" and repack == chosen else ""
            label = f"{'on' if repack else 'off'}{mark}"
            if isinstance(runs, str):
                print(f"| {name} | {rt} | {label} | | {runs} | | |")
                continue
            med = {k: statistics.median(r[k] for r in runs) for k in ("load_s", "pp", "tg")}
            ratio = ""
            if isinstance(base, list) and base:
                bpp = statistics.median(r["pp"] for r in base)
                btg = statistics.median(r["tg"] for r in base)
                ratio = f"{med['pp'] / bpp:.2f}x / {med['tg'] / btg:.2f}x"
            print(f"| {name} | {rt} | {label} | {med['load_s']:.1f} | {med['pp']:.0f} | {med['tg']:.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
