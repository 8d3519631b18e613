"""Guideline calculators against every cell of their tables, boundaries, exclusions and bad input."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from tools.calculators import (
    CALCULATORS,
    BiradsArgs,
    BreastScreeningArgs,
    FleischnerArgs,
    GuidelineCitation,
    LungRadsArgs,
    LungScreeningArgs,
    all_citations,
    birads_category,
    fleischner_followup,
    lung_rads_category,
    run_calculator,
    uspstf_breast_screening,
    uspstf_lung_screening,
)
from tools.errors import ToolArgumentError

CORPUS = Path(__file__).resolve().parents[2] / "knowledge" / "corpus"
GUIDELINES = CORPUS / "guidelines"


# --- corpus helpers ------------------------------------------------------------------------------
@cache
def heading_paths(source: str) -> frozenset[str]:
    """Section paths ('## a > ### b') in a corpus guideline file that have body text of their own.

    Same semantics as the knowledge base's chunker: the ``#`` title is not part of the path, headings
    inside code fences are ignored, and a heading with no text before its first sub-heading is not
    a citable section (nothing would be quoted).
    """
    paths: set[str] = set()
    stack: dict[int, str] = {}
    body: list[str] = []
    fenced = False

    def close() -> None:
        if stack and max(stack) >= 2 and "".join(body).strip():
            paths.add(" > ".join(stack[k] for k in sorted(stack) if k >= 2))

    for line in (GUIDELINES / source).read_text(encoding="utf-8").split("---\n", 2)[2].splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"^(#{1,6})\s+(.+?)\s*$", line)
        if not match:
            body.append(line)
            continue
        close()
        level = len(match.group(1))
        stack = {k: v for k, v in stack.items() if k < level}
        stack[level] = match.group(2)
        body = []
    close()
    return frozenset(paths)


def assert_cited(citation: GuidelineCitation) -> None:
    assert (GUIDELINES / citation.source).is_file(), citation.source
    assert citation.section in heading_paths(citation.source), (
        f"{citation.source} has no section {citation.section!r}"
    )


def front_matter(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n"), path
    return yaml.safe_load(text.split("---\n", 2)[1])


# --- the corpus the calculators cite ------------------------------------------------------------
@pytest.mark.parametrize("citation", all_citations(), ids=lambda c: f"{c.source}:{c.section}")
def test_every_cited_section_exists_in_the_corpus(citation: GuidelineCitation) -> None:
    assert_cited(citation)


def test_heading_parser_rejects_a_missing_section() -> None:
    with pytest.raises(AssertionError):
        assert_cited(
            GuidelineCitation("fleischner-2017.md", "Solid nodules: single > No such cell", "", "", 0, "")
        )


@pytest.mark.parametrize("path", sorted(GUIDELINES.glob("*.md")), ids=lambda p: p.name)
def test_guideline_front_matter(path: Path) -> None:
    meta = front_matter(path)
    assert meta["kind"] == "guideline"
    for key in ("title", "organisation", "year", "url", "reference"):
        assert meta.get(key), f"{path.name}: missing {key}"
    assert str(meta["url"]).startswith("https://")
    assert 1900 < int(meta["year"]) < 2100


@pytest.mark.parametrize("path", sorted((CORPUS / "demo_reports").glob("*.md")), ids=lambda p: p.name)
def test_demo_reports_are_marked_synthetic(path: Path) -> None:
    meta = front_matter(path)
    assert meta["kind"] == "report"
    assert meta["synthetic"] is True
    assert re.fullmatch(r"DEMO-\d{4}", meta["patient"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", meta["study_date"])
    assert meta["modality"] in {"CT", "CR", "DX", "US", "MG", "MR"}
    text = path.read_text(encoding="utf-8")
    assert "SYNTHETIC" in text
    for heading in ("INDICATION", "TECHNIQUE", "COMPARISON", "FINDINGS", "IMPRESSION"):
        assert f"## {heading}" in text


# =================================================================================================
# Fleischner 2017
# =================================================================================================
def fl(**kwargs) -> object:
    return fleischner_followup(FleischnerArgs(**kwargs))


# (kwargs, expected section suffix, expected recommendation fragment, expected follow-up [(months, optional)])
FLEISCHNER_CELLS = [
    # solid, single
    (
        dict(size_mm=4, nodule_type="solid", risk="low"),
        "Single solid nodule smaller than 6 mm",
        "No routine",
        [],
    ),
    (
        dict(size_mm=4, nodule_type="solid", risk="high"),
        "Single solid nodule smaller than 6 mm",
        "Optional CT at 12",
        [((12, 12), True)],
    ),
    (
        dict(size_mm=7, nodule_type="solid", risk="low"),
        "Single solid nodule 6 to 8 mm",
        "then consider CT at 18-24",
        [((6, 12), False), ((18, 24), True)],
    ),
    (
        dict(size_mm=7, nodule_type="solid", risk="high"),
        "Single solid nodule 6 to 8 mm",
        "then CT at 18-24",
        [((6, 12), False), ((18, 24), False)],
    ),
    (
        dict(size_mm=12, nodule_type="solid", risk="low"),
        "Single solid nodule larger than 8 mm",
        "PET/CT",
        [((3, 3), True), (None, True), (None, True)],
    ),
    (
        dict(size_mm=12, nodule_type="solid", risk="high"),
        "Single solid nodule larger than 8 mm",
        "tissue sampling",
        [((3, 3), True), (None, True), (None, True)],
    ),
    # solid, multiple
    (
        dict(size_mm=4, nodule_type="solid", risk="low", multiple=True),
        "Multiple solid nodules smaller than 6 mm",
        "No routine",
        [],
    ),
    (
        dict(size_mm=4, nodule_type="solid", risk="high", multiple=True),
        "Multiple solid nodules smaller than 6 mm",
        "Optional CT at 12",
        [((12, 12), True)],
    ),
    (
        dict(size_mm=7, nodule_type="solid", risk="low", multiple=True),
        "Multiple solid nodules 6 to 8 mm",
        "CT at 3-6 months, then consider",
        [((3, 6), False), ((18, 24), True)],
    ),
    (
        dict(size_mm=7, nodule_type="solid", risk="high", multiple=True),
        "Multiple solid nodules 6 to 8 mm",
        "CT at 3-6 months, then CT at 18-24",
        [((3, 6), False), ((18, 24), False)],
    ),
    (
        dict(size_mm=12, nodule_type="solid", risk="low", multiple=True),
        "Multiple solid nodules larger than 8 mm",
        "most suspicious",
        [((3, 6), False), ((18, 24), True)],
    ),
    (
        dict(size_mm=12, nodule_type="solid", risk="high", multiple=True),
        "Multiple solid nodules larger than 8 mm",
        "most suspicious",
        [((3, 6), False), ((18, 24), True)],
    ),
    # subsolid, single
    (
        dict(size_mm=5, nodule_type="ground_glass"),
        "Single pure ground-glass nodule smaller than 6 mm",
        "No routine",
        [],
    ),
    (
        dict(size_mm=9, nodule_type="ground_glass"),
        "Single pure ground-glass nodule 6 mm or larger",
        "every 2 years until 5 years",
        [((6, 12), False), ((24, 24), False)],
    ),
    (
        dict(size_mm=5, nodule_type="part_solid", solid_component_mm=2),
        "Single part-solid nodule smaller than 6 mm",
        "No routine",
        [],
    ),
    (
        dict(size_mm=9, nodule_type="part_solid", solid_component_mm=4),
        "Single part-solid nodule 6 mm or larger with solid component smaller than 6 mm",
        "annual CT for 5 years",
        [((3, 6), False), ((12, 12), False)],
    ),
    (
        dict(size_mm=14, nodule_type="part_solid", solid_component_mm=7),
        "Single part-solid nodule with solid component 6 mm or larger",
        "PET/CT, biopsy or resection",
        [((3, 6), False), (None, True), (None, True)],
    ),
    # subsolid, multiple
    (
        dict(size_mm=4, nodule_type="ground_glass", multiple=True),
        "Multiple subsolid nodules smaller than 6 mm",
        "consider CT at 2 and 4 years",
        [((3, 6), False), ((24, 24), True), ((48, 48), True)],
    ),
    (
        dict(size_mm=4, nodule_type="part_solid", solid_component_mm=2, multiple=True),
        "Multiple subsolid nodules smaller than 6 mm",
        "2 and 4 years",
        [((3, 6), False), ((24, 24), True), ((48, 48), True)],
    ),
    (
        dict(size_mm=10, nodule_type="ground_glass", multiple=True),
        "Multiple subsolid nodules 6 mm or larger",
        "most suspicious",
        [((3, 6), False)],
    ),
    (
        dict(size_mm=10, nodule_type="part_solid", solid_component_mm=3, multiple=True),
        "Multiple subsolid nodules 6 mm or larger",
        "most suspicious",
        [((3, 6), False)],
    ),
]


@pytest.mark.parametrize(("kwargs", "section", "fragment", "follow_up"), FLEISCHNER_CELLS)
def test_fleischner_every_table_cell(kwargs, section, fragment, follow_up) -> None:
    result = fl(**kwargs)
    assert result.applicable
    assert result.citation.section.endswith(section)
    assert result.citation.source == "fleischner-2017.md"
    assert_cited(result.citation)
    assert fragment in result.recommendation
    assert [(f.months, f.optional) for f in result.follow_up] == follow_up
    assert "not a diagnosis" in result.disclaimer


@pytest.mark.parametrize(
    ("size", "band", "used"),
    [
        (3.0, "< 6 mm", 3),
        (5.4, "< 6 mm", 5),
        (5.49, "< 6 mm", 5),
        (5.5, "6-8 mm", 6),  # half rounds up
        (5.9, "6-8 mm", 6),
        (6.0, "6-8 mm", 6),
        (8.0, "6-8 mm", 8),
        (8.1, "6-8 mm", 8),
        (8.4, "6-8 mm", 8),
        (8.5, "> 8 mm", 9),
        (9.0, "> 8 mm", 9),
        (30.4, "> 8 mm", 30),
    ],
)
def test_fleischner_solid_boundaries_and_rounding(size: float, band: str, used: int) -> None:
    result = fl(size_mm=size, nodule_type="solid", risk="high")
    assert f", {band}," in result.rule
    assert result.size_mm_used == used


@pytest.mark.parametrize(("size", "single_gg_band"), [(5.4, "< 6 mm"), (5.5, ">= 6 mm"), (5.9, ">= 6 mm")])
def test_fleischner_ground_glass_boundary(size: float, single_gg_band: str) -> None:
    assert single_gg_band in fl(size_mm=size, nodule_type="ground_glass").rule


@pytest.mark.parametrize(
    ("solid", "highly_suspicious"), [(5.4, False), (5.5, True), (5.9, True), (6.0, True), (7.5, True)]
)
def test_fleischner_part_solid_component_boundary(solid: float, highly_suspicious: bool) -> None:
    result = fl(size_mm=12, nodule_type="part_solid", solid_component_mm=solid)
    assert ("solid component 6 mm or larger" in result.citation.section) is highly_suspicious


def test_fleischner_risk_unknown_shows_both_columns() -> None:
    result = fl(size_mm=7, nodule_type="solid")
    assert "Low risk:" in result.recommendation and "High risk:" in result.recommendation
    assert "risk not stated" in result.rule
    assert [f.optional for f in result.follow_up] == [False, False]  # the high-risk column


def test_fleischner_risk_does_not_change_subsolid_advice() -> None:
    low = fl(size_mm=9, nodule_type="ground_glass", risk="low")
    high = fl(size_mm=9, nodule_type="ground_glass", risk="high")
    assert low.recommendation == high.recommendation
    assert any("does not change" in n for n in low.notes)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (dict(patient_age_years=34), "younger than 35"),
        (dict(patient_age_years=0), "younger than 35"),
        (dict(lung_cancer_screening=True), "Lung-RADS"),
        (dict(known_primary_cancer=True), "known primary cancer"),
        (dict(immunocompromised=True), "immunocompromised"),
    ],
)
def test_fleischner_exclusions(extra: dict, reason: str) -> None:
    result = fl(size_mm=7, nodule_type="solid", risk="high", **extra)
    assert not result.applicable
    assert reason in result.recommendation
    assert result.follow_up == ()
    assert result.citation.section == "Scope and exclusions"
    assert_cited(result.citation)


def test_fleischner_age_35_is_applicable_and_exclusions_combine() -> None:
    assert fl(size_mm=7, nodule_type="solid", risk="low", patient_age_years=35).applicable
    both = fl(size_mm=7, nodule_type="solid", patient_age_years=30, immunocompromised=True)
    assert "younger than 35" in both.recommendation and "immunocompromised" in both.recommendation


def test_fleischner_mass_over_30_mm_is_out_of_scope() -> None:
    result = fl(size_mm=30.5, nodule_type="solid", risk="low")
    assert not result.applicable and "mass" in result.recommendation and result.size_mm_used == 31


def test_fleischner_typical_perifissural_needs_no_follow_up() -> None:
    result = fl(size_mm=7, nodule_type="solid", risk="high", typical_perifissural=True)
    assert result.applicable and result.follow_up == ()
    assert result.citation.section == "Special situations > Perifissural and juxtapleural nodules"


@pytest.mark.parametrize("alias", ["ground-glass", "GGN", "Pure ground glass", "non-solid"])
def test_fleischner_type_aliases(alias: str) -> None:
    assert FleischnerArgs(size_mm=7, nodule_type=alias).nodule_type == "ground_glass"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(size_mm=-3, nodule_type="solid"), "greater than 0"),
        (dict(size_mm=0, nodule_type="solid"), "greater than 0"),
        (dict(size_mm=7, nodule_type="cavitary"), "nodule_type"),
        (dict(size_mm=7, nodule_type="part_solid"), "needs solid_component_mm"),
        (dict(size_mm=7, nodule_type="part_solid", solid_component_mm=7), "smaller than size_mm"),
        (dict(size_mm=7, nodule_type="part_solid", solid_component_mm=-1), "greater than 0"),
        (dict(size_mm=7, nodule_type="solid", solid_component_mm=3), "only to part_solid"),
        (dict(size_mm=7, nodule_type="solid", risk="medium"), "risk"),
        (dict(size_mm=7, nodule_type="solid", patient_age_years=-1), "patient_age_years"),
        (dict(size_mm=7, nodule_type="ground_glass", typical_perifissural=True), "only to solid"),
        (dict(size_mm=7, nodule_type="solid", shape="round"), "shape"),
        (dict(nodule_type="solid"), "size_mm"),
        (dict(size_mm="seven", nodule_type="solid"), "size_mm"),
    ],
)
def test_fleischner_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FleischnerArgs(**kwargs)
    with pytest.raises(ToolArgumentError, match=message):
        run_calculator("fleischner_followup", kwargs)


# =================================================================================================
# Lung-RADS v2022
# =================================================================================================
def lr(**kwargs) -> object:
    return lung_rads_category(LungRadsArgs(**kwargs))


LUNG_RADS_CELLS = [
    # solid, baseline
    (dict(nodule_type="solid", size_mm=5.9), "2"),
    (dict(nodule_type="solid", size_mm=6.0), "3"),
    (dict(nodule_type="solid", size_mm=7.9), "3"),
    (dict(nodule_type="solid", size_mm=8.0), "4A"),
    (dict(nodule_type="solid", size_mm=14.9), "4A"),
    (dict(nodule_type="solid", size_mm=15.0), "4B"),
    # solid, new
    (dict(nodule_type="solid", size_mm=3.9, status="new"), "2"),
    (dict(nodule_type="solid", size_mm=4.0, status="new"), "3"),
    (dict(nodule_type="solid", size_mm=5.9, status="new"), "3"),
    (dict(nodule_type="solid", size_mm=6.0, status="new"), "4A"),
    (dict(nodule_type="solid", size_mm=7.9, status="new"), "4A"),
    (dict(nodule_type="solid", size_mm=8.0, status="new"), "4B"),
    # solid, growing
    (dict(nodule_type="solid", size_mm=5.0, status="growing"), "4A"),
    (dict(nodule_type="solid", size_mm=7.9, status="growing"), "4A"),
    (dict(nodule_type="solid", size_mm=8.0, status="growing"), "4B"),
    (dict(nodule_type="solid", size_mm=6.0, status="slowly_growing"), "4B"),
    # stepped management
    (dict(nodule_type="solid", size_mm=7.0, status="stable", prior_category="3"), "2"),
    (dict(nodule_type="solid", size_mm=9.0, status="stable", prior_category="4A"), "3"),
    (dict(nodule_type="solid", size_mm=16.0, status="stable", prior_category="4B"), "4B"),
    (dict(nodule_type="solid", size_mm=4.0, status="stable", prior_category="2"), "2"),
    (dict(nodule_type="part_solid", size_mm=8, solid_component_mm=3, status="stable", prior_category=3), "2"),
    # part-solid, baseline
    (dict(nodule_type="part_solid", size_mm=5.9, solid_component_mm=3.0), "2"),
    (dict(nodule_type="part_solid", size_mm=6.0, solid_component_mm=3.0), "3"),
    (dict(nodule_type="part_solid", size_mm=12.0, solid_component_mm=5.9), "3"),
    (dict(nodule_type="part_solid", size_mm=12.0, solid_component_mm=6.0), "4A"),
    (dict(nodule_type="part_solid", size_mm=12.0, solid_component_mm=7.9), "4A"),
    (dict(nodule_type="part_solid", size_mm=12.0, solid_component_mm=8.0), "4B"),
    # part-solid, new / growing
    (dict(nodule_type="part_solid", size_mm=5.9, solid_component_mm=2.0, status="new"), "3"),
    (dict(nodule_type="part_solid", size_mm=9.0, solid_component_mm=3.9, status="new"), "4A"),
    (dict(nodule_type="part_solid", size_mm=9.0, solid_component_mm=4.0, status="new"), "4B"),
    (dict(nodule_type="part_solid", size_mm=9.0, solid_component_mm=3.9, status="growing"), "4A"),
    (dict(nodule_type="part_solid", size_mm=9.0, solid_component_mm=4.0, status="growing"), "4B"),
    (dict(nodule_type="part_solid", size_mm=9.0, solid_component_mm=2.0, status="slowly_growing"), "4B"),
    # non-solid
    (dict(nodule_type="ground_glass", size_mm=29.9), "2"),
    (dict(nodule_type="ground_glass", size_mm=29.9, status="new"), "2"),
    (dict(nodule_type="ground_glass", size_mm=12.0, status="growing"), "2"),
    (dict(nodule_type="ground_glass", size_mm=30.0), "3"),
    (dict(nodule_type="ground_glass", size_mm=30.0, status="new"), "3"),
    (dict(nodule_type="ground_glass", size_mm=35.0, status="stable"), "2"),
    (dict(nodule_type="ground_glass", size_mm=35.0, status="slowly_growing"), "2"),
    (dict(nodule_type="ground_glass", size_mm=35.0, status="growing"), "3"),
    # juxtapleural
    (dict(nodule_type="juxtapleural", size_mm=9.9), "2"),
    (dict(nodule_type="juxtapleural", size_mm=9.9, status="new"), "2"),
    (dict(nodule_type="juxtapleural", size_mm=10.0), "4A"),
    (dict(nodule_type="juxtapleural", size_mm=7.0, typical_morphology=False), "3"),
    (dict(nodule_type="juxtapleural", size_mm=5.0, status="growing"), "4A"),
    # airway
    (dict(nodule_type="airway", airway_location="subsegmental"), "2"),
    (dict(nodule_type="airway", airway_location="subsegmental", status="new"), "2"),
    (dict(nodule_type="airway", airway_location="segmental_or_proximal"), "4A"),
    (dict(nodule_type="airway", airway_location="segmental_or_proximal", status="new"), "4A"),
    (dict(nodule_type="airway", airway_location="segmental_or_proximal", status="stable"), "4B"),
    (dict(nodule_type="airway", airway_location="segmental_or_proximal", status="growing"), "4B"),
    # benign features
    (dict(nodule_type="solid", size_mm=9.0, benign_features=True), "1"),
]

MANAGEMENT = {
    "1": "12 months",
    "2": "12 months",
    "3": "6 months",
    "4A": "3 months",
    "4B": "tissue sampling",
    "4X": "tissue sampling",
}
MALIGNANCY = {"1": "< 1%", "2": "< 1%", "3": "1-2%", "4A": "5-15%", "4B": "> 15%", "4X": "> 15%"}


@pytest.mark.parametrize(("kwargs", "category"), LUNG_RADS_CELLS)
def test_lung_rads_every_table_cell(kwargs: dict, category: str) -> None:
    result = lr(**kwargs)
    assert result.category == category, result.rule
    assert MANAGEMENT[category] in result.management
    assert result.probability_of_malignancy == MALIGNANCY[category]
    assert result.citation.source == "lung-rads-2022.md"
    assert_cited(result.citation)
    status = kwargs.get("status", "baseline")
    if status in ("baseline", "new", "growing") and not kwargs.get("benign_features"):
        # the cited section is the category's own block
        assert result.citation.section.startswith(f"Category {category}:")


@pytest.mark.parametrize(
    ("size", "category", "used"), [(5.94, "2", 5.9), (5.95, "3", 6.0), (7.95, "4A", 8.0)]
)
def test_lung_rads_rounds_to_one_decimal_half_up(size: float, category: str, used: float) -> None:
    result = lr(nodule_type="solid", size_mm=size)
    assert (result.category, result.size_mm_used) == (category, used)


def test_lung_rads_stepped_management_cites_the_stepped_sections() -> None:
    assert lr(nodule_type="solid", size_mm=7, status="stable", prior_category="3").citation.section.endswith(
        "Stepped management to category 2"
    )
    assert lr(nodule_type="solid", size_mm=9, status="stable", prior_category="4a").citation.section.endswith(
        "Stepped management to category 3"
    )


@pytest.mark.parametrize(("size", "before"), [(7.0, "3"), (10.0, "4A"), (16.0, "4B")])
def test_lung_rads_4x_upgrades_category_3_and_4(size: float, before: str) -> None:
    assert lr(nodule_type="solid", size_mm=size).category == before
    result = lr(nodule_type="solid", size_mm=size, suspicious_features=True)
    assert result.category == "4X"
    assert result.citation.section.startswith("Category 4X")


def test_lung_rads_4x_does_not_apply_to_category_2() -> None:
    result = lr(nodule_type="solid", size_mm=4.0, suspicious_features=True)
    assert result.category == "2"
    assert any("4X applies only" in n for n in result.notes)


def test_lung_rads_s_modifier() -> None:
    result = lr(nodule_type="solid", size_mm=4.0, significant_other_finding=True)
    assert result.label == "2S" and result.s_modifier and result.category == "2"


def test_lung_rads_rules_outside_the_table_raise() -> None:
    with pytest.raises(ToolArgumentError, match="prior_category"):
        lr(nodule_type="solid", size_mm=7, status="stable")
    with pytest.raises(ToolArgumentError, match="no rule"):
        lr(nodule_type="airway", airway_location="subsegmental", status="growing")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(nodule_type="solid"), "needs size_mm"),
        (dict(nodule_type="solid", size_mm=-1), "greater than 0"),
        (dict(nodule_type="mass", size_mm=7), "nodule_type"),
        (dict(nodule_type="part_solid", size_mm=8), "needs solid_component_mm"),
        (dict(nodule_type="part_solid", size_mm=8, solid_component_mm=9), "smaller than size_mm"),
        (dict(nodule_type="ground_glass", size_mm=8, solid_component_mm=2), "only to part_solid"),
        (dict(nodule_type="airway"), "airway_location"),
        (dict(nodule_type="solid", size_mm=5, airway_location="subsegmental"), "only to airway"),
        (dict(nodule_type="solid", size_mm=5, status="shrinking"), "status"),
        (dict(nodule_type="solid", size_mm=5, status="stable", prior_category="5"), "prior_category"),
    ],
)
def test_lung_rads_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LungRadsArgs(**kwargs)
    with pytest.raises(ToolArgumentError, match=message):
        run_calculator("lung_rads_category", kwargs)


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("perifissural", "juxtapleural"),
        ("non-solid", "ground_glass"),
        ("Part-Solid", "part_solid"),
        ("endobronchial", "airway"),
    ],
)
def test_lung_rads_type_aliases(alias: str, canonical: str) -> None:
    kwargs = dict(size_mm=5.0, solid_component_mm=2.0) if canonical == "part_solid" else dict(size_mm=5.0)
    if canonical == "airway":
        kwargs = dict(airway_location="segmental")
    assert LungRadsArgs(nodule_type=alias, **kwargs).nodule_type == canonical


# =================================================================================================
# BI-RADS
# =================================================================================================
BIRADS_CELLS = [
    ("0", "Incomplete", "not applicable", None, "Recall"),
    ("1", "Negative", "essentially 0%", (0.0, 0.0), "Routine screening"),
    ("2", "Benign", "essentially 0%", (0.0, 0.0), "Routine screening"),
    ("3", "Probably benign", "> 0% but <= 2%", (0.0, 2.0), "6-month"),
    ("4", "Suspicious", "> 2% but < 95%", (2.0, 95.0), "Tissue diagnosis"),
    ("4A", "Low suspicion", "> 2% to <= 10%", (2.0, 10.0), "Tissue diagnosis"),
    ("4B", "Moderate suspicion", "> 10% to <= 50%", (10.0, 50.0), "Tissue diagnosis"),
    ("4C", "High suspicion", "> 50% to < 95%", (50.0, 95.0), "Tissue diagnosis"),
    ("5", "Highly suggestive", ">= 95%", (95.0, 100.0), "Tissue diagnosis"),
    ("6", "Known biopsy-proven", "not applicable", None, "Surgical excision"),
]


@pytest.mark.parametrize(("category", "name", "likelihood", "percent", "management"), BIRADS_CELLS)
def test_birads_every_category(category, name, likelihood, percent, management) -> None:
    result = birads_category(BiradsArgs(category=category))
    assert result.category == category
    assert result.name.startswith(name)
    assert result.likelihood_of_malignancy.startswith(likelihood)
    assert result.malignancy_percent == percent
    assert management in result.management
    assert result.citation.source == "bi-rads-5th-edition.md"
    assert_cited(result.citation)
    assert result.citation.section.startswith(f"Assessment categories > Category {category}:")


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [(3, "3"), ("4a", "4A"), ("BI-RADS 4B", "4B"), (" birads 5 ", "5"), ("Category 4 C", "4C")],
)
def test_birads_accepts_common_spellings(raw, canonical: str) -> None:
    assert BiradsArgs(category=raw).category == canonical


@pytest.mark.parametrize("bad", ["7", "4D", "", "3A", -1, 10, True, None, "four"])
def test_birads_invalid_category_is_a_typed_error(bad) -> None:
    with pytest.raises(ValidationError):
        BiradsArgs(category=bad)
    with pytest.raises(ToolArgumentError, match="invalid arguments for birads_category: category"):
        run_calculator("birads_category", {"category": bad})


def test_birads_mri_has_no_subcategories() -> None:
    with pytest.raises(ValidationError, match="MRI"):
        BiradsArgs(category="4B", modality="MR")
    assert birads_category(BiradsArgs(category="4", modality="mri")).category == "4"
    assert BiradsArgs(category="4B", modality="US").modality == "ultrasound"


# =================================================================================================
# USPSTF 2021 lung screening eligibility
# =================================================================================================
@pytest.mark.parametrize(
    ("kwargs", "eligible", "section"),
    [
        (dict(age_years=50, pack_years=20, smoking_status="current"), True, "Recommendation"),
        (dict(age_years=80, pack_years=40, smoking_status="current"), True, "Recommendation"),
        (dict(age_years=49, pack_years=40, smoking_status="current"), False, "Eligibility criteria"),
        (dict(age_years=81, pack_years=40, smoking_status="current"), False, "Eligibility criteria"),
        (dict(age_years=60, pack_years=19.9, smoking_status="current"), False, "Eligibility criteria"),
        (
            dict(age_years=60, pack_years=30, smoking_status="former", years_since_quit=14.9),
            True,
            "Recommendation",
        ),
        (
            dict(age_years=60, pack_years=30, smoking_status="former", years_since_quit=15),
            False,
            "When to stop screening",
        ),
        (dict(age_years=60, pack_years=0, smoking_status="never"), False, "Eligibility criteria"),
        (
            dict(
                age_years=70,
                pack_years=30,
                smoking_status="current",
                limited_life_expectancy_or_unfit_for_surgery=True,
            ),
            False,
            "When to stop screening",
        ),
    ],
)
def test_uspstf_lung_screening(kwargs: dict, eligible: bool, section: str) -> None:
    result = uspstf_lung_screening(LungScreeningArgs(**kwargs))
    assert result.eligible is eligible
    assert result.citation.section == section
    assert_cited(result.citation)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(age_years=60, pack_years=30, smoking_status="former"),
        dict(age_years=60, pack_years=5, smoking_status="never"),
        dict(age_years=60, pack_years=30, smoking_status="current", years_since_quit=2),
        dict(age_years=-5, pack_years=30, smoking_status="current"),
        dict(age_years=60, pack_years=-1, smoking_status="current"),
        dict(age_years=60, pack_years=30, smoking_status="sometimes"),
    ],
)
def test_uspstf_lung_screening_bad_input(kwargs: dict) -> None:
    with pytest.raises(ToolArgumentError, match="invalid arguments for uspstf_lung_screening"):
        run_calculator("uspstf_lung_screening", kwargs)


# =================================================================================================
# USPSTF 2024 breast screening
# =================================================================================================
@pytest.mark.parametrize(
    ("kwargs", "applicable", "grade", "section"),
    [
        (dict(age_years=39), False, None, "Recommendation for ages 40 to 74"),
        (dict(age_years=40), True, "B", "Recommendation for ages 40 to 74"),
        (dict(age_years=74), True, "B", "Recommendation for ages 40 to 74"),
        (dict(age_years=75), True, "I", "Women aged 75 years or older"),
        (dict(age_years=50, high_risk=True), False, None, "Population"),
    ],
)
def test_uspstf_breast_screening(kwargs: dict, applicable: bool, grade: str | None, section: str) -> None:
    result = uspstf_breast_screening(BreastScreeningArgs(**kwargs))
    assert (result.applicable, result.grade, result.citation.section) == (applicable, grade, section)
    assert_cited(result.citation)
    if grade == "B":
        assert "Biennial" in result.recommendation


def test_uspstf_breast_dense_breasts_note_and_bad_input() -> None:
    result = uspstf_breast_screening(BreastScreeningArgs(age_years=45, dense_breasts=True))
    assert result.grade == "B" and any("I statement" in n for n in result.notes)
    for bad in (dict(age_years=-1), dict(age_years="old"), dict(age_years=50, sex="F"), {}):
        with pytest.raises(ToolArgumentError, match="invalid arguments for uspstf_breast_screening"):
            run_calculator("uspstf_breast_screening", bad)


# =================================================================================================
# registry
# =================================================================================================
def test_registry_entries_run_and_results_serialise() -> None:
    assert {c.name for c in CALCULATORS} == {"fleischner_followup", "lung_rads_category", "lung_rads_meaning",
                                             "birads_category", "uspstf_lung_screening", "uspstf_breast_screening"}
    result = run_calculator("fleischner_followup", {"size_mm": 7, "nodule_type": "solid", "risk": "low"})
    as_dict = result.to_dict()
    assert as_dict["citation"]["section"] == "Solid nodules: single > Single solid nodule 6 to 8 mm"
    assert as_dict["follow_up"][0]["months"] == (6, 12)
    for calc in CALCULATORS:
        schema = calc.args_model.model_json_schema()
        assert schema["properties"] and all("description" in p for p in schema["properties"].values())
        assert calc.function.__doc__ and calc.guideline


def test_unknown_calculator_name() -> None:
    with pytest.raises(ToolArgumentError, match="unknown calculator 'fleischner'"):
        run_calculator("fleischner", {})


@pytest.mark.parametrize(("category", "descriptor", "management"), [
    ("0", "Incomplete", "comparison"), ("1", "Negative", "12 months"), ("2", "Benign", "12 months"),
    ("3", "Probably benign", "6 months"), ("4a", "Suspicious", "3 months"), ("Lung-RADS 4B", "Very suspicious", "PET"),
    ("4X", "Very suspicious", "tissue sampling"),
])
def test_lung_rads_meaning_of_every_category(category, descriptor, management) -> None:
    result = run_calculator("lung_rads_meaning", {"category": category})
    assert result.descriptor.startswith(descriptor) and management in result.management
    assert result.citation.section in heading_paths(result.citation.source)
    with pytest.raises(ToolArgumentError):
        run_calculator("lung_rads_meaning", {"category": "5"})


# --- with a prior examination (a measured comparison or words) -----------------------------------------
def _fl(**kw) -> object:
    base = {"size_mm": 7, "nodule_type": "solid", "risk": "low"}
    return fleischner_followup(FleischnerArgs(**{**base, **kw}))


def test_fleischner_stable_solid_for_two_years_ends_follow_up():
    r = _fl(status="stable", stable_months=24)
    assert r.recommendation.startswith("No further routine follow-up") and r.follow_up == ()
    assert r.citation.section == "Follow-up with a prior examination > Stable solid nodules"
    # a shorter stable period keeps the table's schedule and says how long remains
    short = _fl(status="stable", stable_months=13)
    assert short.recommendation == "CT at 6-12 months, then consider CT at 18-24 months."
    assert any("11 months more" in n for n in short.notes)
    assert any("for how long not given" in n for n in _fl(status="stable").notes)


def test_fleischner_subsolid_needs_five_years():
    ggn = {"size_mm": 8, "nodule_type": "ground_glass"}
    assert _fl(**ggn, status="stable", stable_months=24).recommendation.startswith("CT at 6-12 months")
    done = _fl(**ggn, status="stable", stable_months=60)
    assert done.follow_up == () and "5 years" in done.recommendation
    assert done.citation.section == "Follow-up with a prior examination > Stable subsolid nodules"


def test_fleischner_growth_moves_to_the_next_step():
    solid = _fl(size_mm=5, status="growing")  # a < 6 mm nodule would need no follow-up at baseline
    assert "next step" in solid.recommendation and {f.action for f in solid.follow_up} >= {"PET/CT", "tissue sampling"}
    assert solid.citation.section == "Follow-up with a prior examination > Growing nodules"
    assert "resection" in _fl(size_mm=9, nodule_type="ground_glass", status="growing").recommendation
    ps = _fl(size_mm=12, nodule_type="part_solid", solid_component_mm=5, status="growing")
    assert "highly suspicious" in ps.recommendation
    # growth is not dismissed as a perifissural lymph node
    assert _fl(typical_perifissural=True, status="growing").rule.endswith("growing since the prior CT")


def test_fleischner_resolved_and_new_and_status_words():
    gone = _fl(status="resolved")
    assert gone.recommendation == "No further imaging: the nodule has resolved." and gone.follow_up == ()
    assert gone.citation.section == "Special situations > Nodules that resolve or shrink"
    new = _fl(status="new")
    assert new.recommendation == _fl().recommendation and any("first seen on follow-up" in n for n in new.notes)
    # growth stated in words reaches the same rules
    assert FleischnerArgs(size_mm=7, nodule_type="solid", status="enlarging").status == "growing"
    assert FleischnerArgs(size_mm=7, nodule_type="solid", status="unchanged").status == "stable"
    assert FleischnerArgs(size_mm=7, nodule_type="solid", status="baseline").status is None
    with pytest.raises(ToolArgumentError, match="stable_months applies only"):
        run_calculator("fleischner_followup", {"size_mm": 7, "nodule_type": "solid", "stable_months": 12})
    # exclusions still come first
    assert _fl(status="growing", known_primary_cancer=True).applicable is False


def test_lung_rads_new_growing_and_resolved():
    def lr(**kw):
        return lung_rads_category(LungRadsArgs(**{"nodule_type": "solid", **kw}))

    assert lr(size_mm=7, status="growing").category == "4A"      # a growing solid nodule < 8 mm
    assert lr(size_mm=7, status="baseline").category == "3"      # the same size at baseline
    assert lr(size_mm=8, status="growing").category == "4B"
    assert lr(size_mm=5, status="new").category == "3" and lr(size_mm=3.9, status="new").category == "2"
    gone = lr(size_mm=6, status="resolved")
    assert gone.category == "1" and gone.rule.startswith("nodule resolved") and gone.citation.section.startswith(
        "Category 1")
    assert LungRadsArgs(nodule_type="solid", size_mm=6, status="gone").status == "resolved"
