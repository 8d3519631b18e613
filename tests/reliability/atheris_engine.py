"""Coverage-guided exploration of the loader with atheris (libFuzzer), in a process of its own.

    python -m tests.reliability.atheris_engine --runs 20000 --seed 1 --workdir /tmp/fz

libFuzzer chooses what to mutate by the coverage it sees in ``tools.imaging``, pydicom, nibabel and
Pillow's Python code (instrumented at import); each input is one kind byte and a file. The mutations
are libFuzzer's own (``atheris.Mutate``) or this suite's structure-aware ones (custom mutator). Every
input runs in this process: typed errors are counted, other errors counted and saved in
``workdir/findings``; a hang or memory blow-up makes libFuzzer stop with a ``timeout-``/``oom-``
artifact in ``workdir``. ``workdir/summary.json`` is rewritten after every input (libFuzzer ends the
process with ``exit()``, past any Python cleanup), and ``workdir/corpus`` keeps the inputs that reached new code: the bench
replays them through the forked-child harness.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
from collections import Counter
from pathlib import Path

MAX_LEN = 1 << 20  # seeds over 1 MiB are left out: libFuzzer copies every input


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--shared-data", type=Path)
    parser.add_argument("--budget-mib", type=int, default=256)
    args = parser.parse_args(argv)

    import logging
    import warnings

    import atheris

    warnings.simplefilter("ignore")  # pydicom and nibabel warn about most mutants
    logging.disable(logging.CRITICAL)

    from tests.reliability.fuzz import KINDS, FuzzInput, load_like_the_ui, load_seeds
    from tests.reliability.harness import _where
    from tests.reliability.mutators import mutate

    with atheris.instrument_imports(include=["tools", "pydicom", "nibabel", "PIL", "zipfile", "gzip"]):
        import tools.imaging  # noqa: F401 - instrumented for coverage
        import tools.imaging.archive  # noqa: F401
    from tools.deid import DeidPolicy, installation_secret
    from tools.errors import RadconsultError
    from tools.imaging import ImagingConfig, ImagingLimits

    work = args.workdir
    corpus, findings = work / "corpus", work / "findings"
    corpus.mkdir(parents=True, exist_ok=True)
    findings.mkdir(exist_ok=True)
    seeds = [s for s in load_seeds(args.shared_data) if len(s.data) < MAX_LEN]
    by_kind = {k: [s.data for s in seeds if s.kind == k] for k in KINDS}
    for s in seeds:
        (corpus / f"seed-{s.name}").write_bytes(bytes([KINDS.index(s.kind)]) + s.data)
    policy = DeidPolicy(secret_path=work / "secret.key")
    installation_secret(policy)
    config = ImagingConfig(deid=policy, limits=ImagingLimits(max_decode_bytes=args.budget_mib << 20))
    counts: Counter = Counter()
    classes: Counter = Counter()

    def save_summary() -> None:
        (work / "summary.json").write_text(json.dumps({"executions": sum(counts.values()), **counts,
                                                       "untyped_classes": dict(classes)}))

    def test_one_input(data: bytes) -> None:
        if len(data) < 2:
            return
        kind = KINDS[data[0] % len(KINDS)]
        item = FuzzInput(sum(counts.values()), kind, "atheris", "libfuzzer", data[1:], as_bytes=kind != "zip")
        try:
            load_like_the_ui(item, work / "run", config)
            counts["loaded"] += 1
        except RadconsultError:
            counts["typed"] += 1
        except MemoryError:
            counts["memory"] += 1
        except Exception as exc:
            counts["untyped"] += 1
            classes[_where(exc)] += 1
            (findings / f"{hashlib.sha1(data).hexdigest()[:12]}-{kind}").write_bytes(data)
        finally:
            shutil.rmtree(work / "run", ignore_errors=True)
        save_summary()  # every time: libFuzzer ends the process with exit(), past any Python cleanup

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if len(data) < 2:
            kind = rng.randrange(len(KINDS))
            return bytes([kind]) + rng.choice(by_kind[KINDS[kind]] or [b"\x00"])[:max_size - 1]
        kind = data[0] % len(KINDS)
        payload = data[1:]
        if rng.random() < 0.5 and by_kind[KINDS[kind]]:
            payload, _ = mutate(KINDS[kind], payload, rng, rng.choice(by_kind[KINDS[kind]]))
        else:
            payload = atheris.Mutate(payload, max(1, max_size - 1))
        return bytes([kind]) + payload[:max_size - 1]

    atheris.Setup([sys.argv[0], str(corpus), f"-runs={args.runs}", f"-seed={args.seed}", "-timeout=20",
                   "-rss_limit_mb=4096", f"-max_len={MAX_LEN}", f"-artifact_prefix={work}/",
                   "-print_final_stats=1"], test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
