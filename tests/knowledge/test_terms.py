"""Word forms for lexical matching: spelling variants, endings, abbreviations; and what they change in
a real search (a British query finds an American passage, an abbreviation finds its long form)."""

from __future__ import annotations

from knowledge.bm25 import tokenize
from knowledge.retrieve import hybrid_search, near_duplicate
from knowledge.terms import Abbreviations, spelling, stem
from tests.knowledge.conftest import write


def test_spelling_variants_meet():
    pairs = [("oedema", "edema"), ("haemorrhage", "hemorrhage"), ("anaemia", "anemia"), ("tumours", "tumors"),
             ("paediatric", "pediatric"), ("oesophagus", "esophagus"), ("diarrhoea", "diarrhea"),
             ("leukaemia", "leukemia"), ("anaesthesia", "anesthesia"), ("litre", "liter"), ("foetal", "fetal")]
    for british, american in pairs:
        assert spelling(british) == spelling(american) == american, british
    for word in ("hour", "your", "shoe", "does", "poem", "toe", "centrifuge", "metres"[:3]):
        assert spelling(word) == word


def test_endings():
    assert [stem(w) for w in ("effusions", "opacities", "viruses", "masses", "sinuses")] == \
        ["effusion", "opacity", "virus", "mass", "sinus"]
    assert stem("diagnosis") == "diagnosis" and stem("atelectasis") == "atelectasis"
    assert stem("treated") == stem("treating") == stem("treat") == "treat"
    assert stem("diagnosed") == stem("diagnose") == stem("diagnoses")
    assert stem("stopped") == "stop" and stem("swelling") == "swell" and stem("6") == "6"
    assert tokenize("Haemorrhages were treated") == tokenize("hemorrhage treating")


def test_abbreviations_learned_from_definitions():
    texts = ["Adult acute lymphoblastic leukemia (ALL) is a type of cancer. ALL is treated with chemotherapy.",
             "Chronic obstructive pulmonary disease (COPD) makes it hard to breathe.",
             "The test (see above) is not an abbreviation (and this neither)."]
    abbr = Abbreviations.learn(texts)
    assert abbr.long_form("all") == "acute lymphoblastic leukemia"
    assert abbr.long_form("copd") == "chronic obstructive pulmonary disease"
    assert abbr.long_form("see") is None and abbr.long_form("and") is None
    learned = Abbreviations.learn(["Septum pellucidum (SP) is a membrane."])
    assert learned.long_form("sp") == "septum pellucidum" and learned.expand(["SP"]) == ["septum", "pellucidum"]
    assert abbr.expand(["treatment", "of", "ALL"]) == ["acute", "lymphoblastic", "leukemia"]
    assert abbr.expand(["treat", "them", "all"]) == []  # an ordinary word unless written in capitals
    assert set(abbr.expand(["low", "dose", "computed", "tomography"])) == {"ldct", "ct"}  # long form -> abbreviation
    assert "computed" in abbr.expand(["ct", "chest"])  # built-in radiology abbreviations, any case


def test_near_duplicates():
    a = frozenset(["a", "small", "left", "pleural", "effusion", "is", "seen"])
    b = frozenset(["a", "small", "left", "pleural", "effusion", "is", "noted"])
    c = frozenset(["no", "pleural", "effusion", "or", "pneumothorax"])
    assert near_duplicate(a, b, 0.7) and not near_duplicate(a, c, 0.7) and not near_duplicate(a, b, 1.0)


def test_search_meets_spelling_and_abbreviations(kb, tmp_path):
    write(tmp_path / "g" / "edema.md", "# Pulmonary edema\n\nInterstitial edema shows Kerley B lines and "
          "peribronchial cuffing on the chest radiograph.\n")
    write(tmp_path / "g" / "ggn.md", "# Subsolid nodules\n\nA pure ground glass nodule below 6 mm needs no "
          "routine follow-up.\n")
    write(tmp_path / "g" / "other.md", "# Pneumothorax\n\nA visceral pleural line with no lung markings beyond it.\n")
    write(tmp_path / "g" / "dup.md", "# Pulmonary edema (copy)\n\nInterstitial edema shows Kerley B lines and "
          "peribronchial cuffing on the chest radiograph.\n")
    kb.ingest([tmp_path / "g"], kind="guideline")
    hit = hybrid_search(kb.store, "interstitial oedema", dense=False, k=1)[0]
    assert hit.title.startswith("Pulmonary edema")
    assert hybrid_search(kb.store, "GGN under 6 mm", dense=False, k=1)[0].title == "Subsolid nodules"
    hits = kb.search("Kerley B lines interstitial edema", k=3)
    assert [h.title for h in hits].count("Pulmonary edema") + [h.title for h in hits].count(
        "Pulmonary edema (copy)") == 1  # the verbatim copy is left out
