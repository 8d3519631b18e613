"""Hybrid retrieval: ranking, filters, deduplication, exact quotes, bad queries."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from knowledge.bm25 import BM25Index, tokenize
from knowledge.retrieve import Citation, hybrid_search
from tests.knowledge.conftest import REPORT_MD, write
from tools.errors import InputError


@pytest.fixture
def loaded(kb, docs, tmp_path):
    kb.ingest([docs["effusion"], docs["nodules"], docs["report"]])
    later = REPORT_MD.replace("2024-03-01", "2025-03-01").replace("7 mm", "9 mm")
    other = REPORT_MD.replace("DEMO-9001", "DEMO-9002").replace("modality: CT", "modality: CR")
    kb.ingest([write(tmp_path / "later.md", later), write(tmp_path / "other.md", other)])
    return kb


def test_finds_the_right_section_with_a_citation(loaded, docs):
    hits = loaded.search("septations on ultrasound exudate empyema", k=3)
    top = hits[0]
    assert isinstance(top, Citation)
    assert top.section == "Ultrasound > Septations" and top.organisation == "Test Society"
    assert top.year == 2021 and top.url == "https://example.org/effusion" and top.kind == "guideline"
    original = docs["effusion"].read_text()
    assert original[top.span[0]:top.span[1]] == top.quote
    assert top.score > 0 and all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))


def test_lexical_side_catches_exact_terms(loaded):
    lexical = hybrid_search(loaded.store, "6 to 8 mm", dense=False, k=1)
    assert lexical[0].section == "Solid nodules 6 to 8 mm"
    assert "Solid nodules 6 to 8 mm" in [c.section for c in loaded.search("6 to 8 mm", k=2)]


def test_patient_modality_and_date_filters(loaded):
    mine = loaded.search("solid nodule", kind="report", patient="DEMO-9001", k=10)
    assert mine and {c.patient for c in mine} == {"DEMO-9001"}
    assert {c.study_date for c in mine} == {"2024-03-01", "2025-03-01"}
    recent = loaded.search("solid nodule", kind="report", patient="DEMO-9001", date_from="2025-01-01", k=10)
    assert {c.study_date for c in recent} == {"2025-03-01"}
    old = loaded.search("solid nodule", kind="report", date_to="2024-12-31", modality="ct", k=10)
    assert {(c.patient, c.modality) for c in old} == {("DEMO-9001", "CT")}
    assert loaded.search("solid nodule", kind="report", patient="P-nobody", k=5) == []
    both = loaded.search("solid nodule", kind="all", k=10)
    assert {c.kind for c in both} == {"guideline", "report"}


def test_deduplicated_by_section(loaded):
    hits = loaded.search("nodule follow-up CT", kind="report", k=10)
    keys = [(c.source, c.section) for c in hits]
    assert len(keys) == len(set(keys))


def test_bad_queries(loaded, caplog):
    with pytest.raises(InputError, match="empty"):
        loaded.search("   ")
    with pytest.raises(InputError, match="k must be"):
        loaded.search("effusion", k=0)
    with pytest.raises(InputError, match="YYYY-MM-DD"):
        loaded.search("effusion", kind="report", date_from="March")
    with caplog.at_level(logging.WARNING):
        hits = loaded.search("pleural effusion " * 600, k=2)  # 10,200 characters
    assert hits and "truncated" in caplog.text


def test_bm25_index_refreshes_after_writes(loaded, tmp_path):
    assert not loaded.search("hydropneumothorax", k=3) or \
        "hydropneumothorax" not in loaded.search("hydropneumothorax", k=1)[0].quote
    loaded.ingest([write(tmp_path / "new.md", "# Rare\n\nA hydropneumothorax shows an air-fluid level.\n")],
                  kind="guideline")
    assert "hydropneumothorax" in loaded.search("hydropneumothorax", k=1)[0].quote


def test_bm25_matches_rank_bm25():
    from rank_bm25 import BM25Okapi

    texts = ["pleural effusion blunting costophrenic angle", "pneumothorax visible pleural line",
             "cardiomegaly cardiothoracic ratio above 0.5", "effusion effusion meniscus sign",
             "normal chest radiograph", "atelectasis volume loss"]
    ours = BM25Index(texts).scores("pleural effusion")
    ref = BM25Okapi([tokenize(t) for t in texts]).get_scores(tokenize("pleural effusion"))
    assert list(np.argsort(-ours)[:3]) == list(np.argsort(-ref)[:3])
    assert tokenize("Effusions, opacities; the atelectasis") == ["effusion", "opacity", "atelectasis"]


def test_empty_store(kb):
    assert hybrid_search(kb.store, "anything", k=3) == []


def test_negated_findings_do_not_match_in_reports(kb, tmp_path):
    neg = write(tmp_path / "neg.txt", "FINDINGS: No pleural effusion or pneumothorax. Heart size normal.\n")
    pos = write(tmp_path / "pos.txt", "FINDINGS: Moderate right pleural effusion with basal atelectasis.\n")
    kb.ingest([neg, pos], kind="report", patient="DEMO-1")
    hits = hybrid_search(kb.store, "pleural effusion", kind="report", dense=False, k=5)
    assert [h.quote for h in hits] == ["Moderate right pleural effusion with basal atelectasis."]
    hits = hybrid_search(kb.store, "no pneumothorax", kind="report", dense=False, k=5)
    assert [h.quote for h in hits] == ["No pleural effusion or pneumothorax. Heart size normal."]


def test_bm25f_heading_field_outweighs_body():
    from knowledge.bm25 import BM25FIndex

    heads = ["Gout > Treatment", "Gout > Symptoms", "Psoriasis"]
    bodies = ["Colchicine and rest.", "Joint pain; treatment is discussed elsewhere.", "Scaly skin plaques."]
    index = BM25FIndex([heads, bodies], (3.0, 1.0), (0.3, 0.75))
    scores = index.scores("gout treatment")
    assert scores[0] > scores[1] > scores[2] == 0.0  # the section named for it wins over a mention
    flat = BM25FIndex([heads, bodies], (0.0, 1.0), (0.3, 0.75)).scores("gout treatment")
    assert flat[0] == 0.0 and flat[1] > 0  # heading weight 0: the heading field is not indexed


def test_heading_vectors_are_stored_by_the_writer(loaded):
    """Readers take each chunk's heading-path vector from the store (the writer embedded it once), so a
    reader opening a large store never embeds headings itself."""
    from knowledge.headings import decode_vector, heading_text
    from knowledge.snapshot import build

    rows = list(loaded.store.iter_all("guideline", include=("documents", "metadatas", "embeddings")))
    meta = rows[0]["metadatas"]
    stored = decode_vector(meta["hvec"], 384)
    fresh = loaded.store.embedder.embed([heading_text(meta)])[0]
    assert stored is not None and float(stored @ fresh) > 0.999
    snap = build(loaded.store, "guideline", loaded.store.version("guideline"))
    assert snap.heading_vectors is not None and len(snap.headings) == snap.heading_vectors.shape[0]
    assert decode_vector("not base64!") is None and decode_vector(meta["hvec"], 12) is None


def test_question_type_picks_the_section_of_that_type(kb, tmp_path):
    """Same subject, several sections: the one whose heading names the asked-for type comes first,
    however the question is phrased."""
    write(tmp_path / "gout.md", "# Gout\n\n## Symptoms\n\nSudden joint pain, redness and swelling, often in the "
          "big toe.\n\n## Treatment\n\nColchicine, NSAIDs or corticosteroids for flares; urate lowering with "
          "allopurinol.\n\n## Prognosis\n\nMost people control attacks well with treatment and diet.\n")
    kb.ingest([tmp_path / "gout.md"], kind="guideline")
    for question, section in (("what are the symptoms of gout", "Symptoms"), ("gout sx", "Symptoms"),
                              ("gout tx", "Treatment"), ("how do you manage gout?", "Treatment"),
                              ("gout prognosis", "Prognosis"), ("long-term outlook with gout", "Prognosis")):
        assert kb.search(question, k=1)[0].section == section, question
