"""`radconsult kb ...` end to end, in-process, on a private data directory and a tiny corpus."""

from __future__ import annotations

import json

import pytest

from agent.cli import main
from tests.knowledge.conftest import GUIDELINE_MD, REPORT_MD, write


@pytest.fixture
def env(tmp_path, monkeypatch):
    import knowledge.bootstrap
    import knowledge.ingest

    root = tmp_path / "corpus"
    write(root / "guidelines" / "effusion.md", GUIDELINE_MD)
    monkeypatch.setattr(knowledge.ingest, "corpus_dir", lambda: root.resolve())
    monkeypatch.setattr(knowledge.bootstrap, "corpus_dir", lambda: root.resolve())
    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("RADCONSULT_CHROMA_URL", raising=False)
    monkeypatch.delenv("RADCONSULT_CONFIG", raising=False)
    return tmp_path


def test_ingest_search_stats_delete(env, capsys):
    report = write(env / "r.md", REPORT_MD)
    assert main(["kb", "ingest", str(report), "--kind", "report", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["files"] == 1 and out["chunks_added"] > 0

    assert main(["kb", "search", "septations exudate", "--k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["source"] == "corpus/guidelines/effusion.md"  # bundled corpus built on first use
    assert {"chunk_id", "title", "organisation", "year", "section", "page", "url", "quote", "score"} <= set(hits[0])

    assert main(["kb", "search", "nodule", "--kind", "report", "--patient", "DEMO-9001"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("[1] CT chest (test report)") and "7 mm" in text

    assert main(["kb", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["collections"]["report"] == {"chunks": stats["collections"]["report"]["chunks"],
                                              "sources": 1, "patients": 1}

    assert main(["kb", "ingest", str(report), "--kind", "report"]) == 0
    assert "0 new" in capsys.readouterr().out  # re-ingest is a no-op

    assert main(["kb", "delete", "--source", str(report)]) == 0
    assert "removed" in capsys.readouterr().out
    assert main(["kb", "delete", "--source", str(report)]) == 1

    assert main(["kb", "build"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_bad_input_exits_2_with_a_message(env, capsys):
    empty = write(env / "empty.md", "")
    assert main(["kb", "ingest", str(empty), "--kind", "guideline"]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["kb", "ingest", str(env / "missing.pdf"), "--kind", "guideline"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["kb", "search", "   "]) == 2
    assert "query is empty" in capsys.readouterr().err
    assert main(["kb", "search", "effusion", "--k", "0"]) == 2
    long_query = "effusion " * 1200
    assert main(["kb", "search", long_query, "--k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)
    with pytest.raises(SystemExit):
        main(["kb", "ingest", str(empty), "--kind", "image"])


def test_unwritable_data_dir(env, capsys, monkeypatch):
    blocker = write(env / "blocker", "a file")
    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(blocker))
    assert main(["kb", "stats"]) == 2
    assert "cannot create the knowledge base directory" in capsys.readouterr().err
