"""The bundled knowledge base: built on first run, rebuilt only when the corpus changes."""

from __future__ import annotations

import pytest

from knowledge.bootstrap import corpus_files
from knowledge.ingest import corpus_dir


def test_first_run_builds_then_nothing_to_do(kb, tiny_corpus):
    report = kb.ensure_bundled()
    assert report is not None and report.files == 3 and not report.failed
    stats = kb.stats()
    assert stats["bundled"] and stats["collections"]["report"]["patients"] == 1
    assert kb.ensure_bundled() is None
    sources = {c.source for c in kb.search("pleural effusion", k=5)}
    assert "corpus/guidelines/effusion.md" in sources


def test_corpus_changes_are_applied(kb, tiny_corpus):
    kb.ensure_bundled()
    (tiny_corpus / "guidelines" / "nodules.md").unlink()
    path = tiny_corpus / "guidelines" / "effusion.md"
    path.write_text(path.read_text() + "\n## Subpulmonic effusion\n\nA subpulmonic effusion mimics a raised "
                    "hemidiaphragm.\n")
    report = kb.ensure_bundled()
    assert report is not None and report.chunks_added == 1
    assert {c.source for c in kb.search("solid nodule", k=10)} == {"corpus/guidelines/effusion.md"}
    assert kb.ensure_bundled(force=True).chunks_added == 0  # forced, but nothing new to embed


@pytest.mark.slow  # embeds the whole bundled corpus (~230 chunks)
def test_real_bundled_corpus(bundled_kb):
    kb, report = bundled_kb
    files = corpus_files()
    assert files, f"no corpus files under {corpus_dir()}"
    assert report is not None and report.files == len(files) and not report.failed
    stats = kb.stats()
    assert stats["collections"]["guideline"]["chunks"] > 0
    if any(p.name.startswith("fleischner") for p, _ in files):
        hits = kb.search("solid pulmonary nodule 6 to 8 mm high risk follow-up CT", k=3)
        assert any("fleischner" in c.source for c in hits)
    demo = [k for p, k in files if k == "report"]
    if demo:
        assert stats["collections"]["report"]["patients"] >= 1
