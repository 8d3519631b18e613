"""Knowledge-base fixtures: the embedding model loads once per test session; small real documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.config import KnowledgeConfig

GUIDELINE_MD = """---
title: "Pleural effusion on chest radiographs (test summary)"
organisation: "Test Society"
year: 2021
url: "https://example.org/effusion"
reference: "Test Society. Pleural effusion on chest radiographs. Test Journal. 2021;1:1-2."
kind: guideline
---

# Pleural effusion

## Radiographic signs

Blunting of the costophrenic angle on an erect PA radiograph needs about 200 to 300 mL of fluid.
A lateral decubitus view detects smaller effusions, as little as 50 mL.

## Ultrasound

Ultrasound is more sensitive than radiography and guides thoracentesis safely.

### Septations

Septations on ultrasound suggest an exudate or empyema.
"""

NODULE_MD = """---
title: "Incidental pulmonary nodules (test summary)"
organisation: "Nodule Group"
year: 2017
url: "https://example.org/nodules"
kind: guideline
---

# Incidental pulmonary nodules

## Solid nodules smaller than 6 mm

No routine follow-up is needed for a single solid nodule smaller than 6 mm in a low-risk patient.

## Solid nodules 6 to 8 mm

CT at 6 to 12 months, then consider CT at 18 to 24 months.

## Pneumothorax after biopsy

Pneumothorax is the most common complication of percutaneous lung biopsy.
"""

REPORT_MD = """---
title: "CT chest (test report)"
kind: report
patient: DEMO-9001
study_date: "2024-03-01"
modality: CT
body_part: CHEST
synthetic: true
---

# CT chest

## FINDINGS

A 7 mm solid nodule in the right upper lobe. No pleural effusion.

## IMPRESSION

Solid pulmonary nodule of 7 mm; follow-up CT in 6 to 12 months.
"""


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def embedder(tmp_path_factory: pytest.TempPathFactory):
    """The real MiniLM model from the installed package, loaded once for the whole session."""
    from knowledge.embeddings import get_embedder

    model = get_embedder(KnowledgeConfig.under(tmp_path_factory.mktemp("embedder")))
    model.embed(["warm up"])
    return model


@pytest.fixture
def kcfg(tmp_path: Path) -> KnowledgeConfig:
    """The knowledge base's config with a private data directory (kb/, cache/, secret.key)."""
    return KnowledgeConfig.under(tmp_path / "data")


@pytest.fixture
def kb(kcfg: KnowledgeConfig, embedder):
    from knowledge.base import KnowledgeBase
    from knowledge.store import KnowledgeStore

    return KnowledgeBase(kcfg, KnowledgeStore(kcfg, embedder)).open()


@pytest.fixture
def docs(tmp_path: Path) -> dict[str, Path]:
    return {"effusion": write(tmp_path / "docs" / "effusion.md", GUIDELINE_MD),
            "nodules": write(tmp_path / "docs" / "nodules.md", NODULE_MD),
            "report": write(tmp_path / "docs" / "report.md", REPORT_MD)}


@pytest.fixture(scope="session")
def bundled_kb(tmp_path_factory: pytest.TempPathFactory, embedder):
    """The bundled corpus built once, as on a first run."""
    from knowledge.base import KnowledgeBase
    from knowledge.store import KnowledgeStore

    config = KnowledgeConfig.under(tmp_path_factory.mktemp("bundled"))
    kb = KnowledgeBase(config, KnowledgeStore(config, embedder))
    report = kb.ensure_bundled()
    return kb, report


@pytest.fixture
def tiny_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for knowledge/corpus/ with two guidelines and one demo report."""
    import knowledge.bootstrap
    import knowledge.ingest

    root = tmp_path / "corpus"
    write(root / "guidelines" / "effusion.md", GUIDELINE_MD)
    write(root / "guidelines" / "nodules.md", NODULE_MD)
    write(root / "demo_reports" / "demo-9001.md", REPORT_MD)
    monkeypatch.setattr(knowledge.ingest, "corpus_dir", lambda: root.resolve())
    monkeypatch.setattr(knowledge.bootstrap, "corpus_dir", lambda: root.resolve())
    return root
