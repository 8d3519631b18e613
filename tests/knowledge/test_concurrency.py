"""Readers and writers in separate real processes on one embedded store: while one process ingests,
searches (in this process and in another `radconsult` process) answer from the last committed state
without waiting, and a second writer is refused at once with a clear message."""

from __future__ import annotations

import json
import time

from knowledge.base import KnowledgeBase
from knowledge.config import KnowledgeConfig
from knowledge.retrieve import hybrid_search
from knowledge.store import KnowledgeStore
from tests.knowledge.conftest import NODULE_MD, write
from tests.knowledge.procs import cli_env, pdq_sections, start_cli, stop, wait_for


def test_readers_see_committed_state_while_a_writer_ingests(tmp_path, embedder):
    data = tmp_path / "data"
    config = KnowledgeConfig.under(data)
    kb = KnowledgeBase(config, KnowledgeStore(config, embedder)).open()
    kb.ingest([write(tmp_path / "committed" / "nodules.md", NODULE_MD)], kind="guideline")
    committed = {r["id"] for r in kb.store.iter_all("guideline", include=())}
    env = cli_env(data, embedder.cache_dir)
    files = pdq_sections(tmp_path / "big", 40)

    writer = start_cli(["kb", "ingest", str(tmp_path / "big"), "--kind", "guideline", "--no-progress"], env)
    lock = config.kb_dir / "write.lock"
    try:
        wait_for(lambda: lock.exists() and lock.read_text().strip() == str(writer.pid), 120, "the writer's lock")

        # a second writer: refused at once, with the reason and the holder's pid
        t0 = time.monotonic()
        second = start_cli(["kb", "ingest", str(files[0]), "--kind", "guideline"], env)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2 and "being written by another process" in err and str(writer.pid) in err
        assert time.monotonic() - t0 < 60  # process start-up included; no lock wait

        # a reader in another process: answers from what is committed (the first-run corpus build is
        # skipped while the writer holds the lock, it does not wait)
        reader = start_cli(["kb", "search", "solid nodule 6 to 8 mm follow-up", "--k", "3", "--json"], env)
        out, err = reader.communicate(timeout=120)
        assert reader.returncode == 0, err[-2000:]
        hits = json.loads(out)
        assert {h["source"] for h in hits} == {str((tmp_path / "committed" / "nodules.md").resolve())}
        assert "Solid nodules 6 to 8 mm" in [h["section"] for h in hits]

        # readers in this process: many searches, never an error, only committed chunks
        searches = 0
        while writer.poll() is None and searches < 30:
            for hit in hybrid_search(kb.store, "screening mammography benefits", k=5):
                assert hit.chunk_id in committed
            searches += 1
        assert searches > 0
        assert writer.poll() is None, "the writer finished before the checks ran; give it more files"
        out, err = writer.communicate(timeout=600)
        assert writer.returncode == 0, err[-2000:]
    finally:
        stop(writer)
    # the writer committed: readers now see its chunks, the lock is free for the next writer
    sources = {h.source for h in hybrid_search(kb.store, "screening mammography benefits", k=5)}
    assert sources & {str(p.resolve()) for p in files}
    assert not lock.read_text()
    assert kb.ingest([files[0]], kind="guideline").unchanged_files == 1
