"""The generated shorthand corpus (bench/frame_corpus.py) read by the rules alone (no model): frame
accuracy >= 0.99 on the form set the reader was tuned on and on the held-out one."""

from __future__ import annotations

import pytest

from bench.frame_corpus import CELLS, Item, generate, score, wrong_fields


@pytest.mark.parametrize("which", ["tune", "held_out"])
def test_generated_corpus_is_read_with_at_least_99_percent_frame_accuracy(which):
    items = generate(len(CELLS) * 60, which)
    result = score(items)
    shown = "; ".join(f"{i.question!r}: {d}" for i, d in result["failures"][:5])
    assert result["accuracy"] >= 0.99, shown
    assert set(result["per_cell"]) == {i.cell for i in items} and len(result["per_cell"]) == len(CELLS)


def test_generation_is_deterministic_and_the_two_sets_differ():
    a, b = generate(50, "tune"), generate(50, "tune")
    assert [i.question for i in a] == [i.question for i in b]
    held = {i.question for i in generate(50, "held_out")}
    assert not held & {i.question for i in a}


def test_the_scorer_catches_a_wrong_reading():
    # a scorer that cannot fail would make the accuracy above meaningless
    item = Item("check", "7 mm solid nodule, 30 PY", {"size_mm": 8.0, "risk": "high"})
    assert wrong_fields(item, {"size_mm": 7.0, "risk": "high"}) == ["size_mm"]
    assert score([item])["accuracy"] == 0.0
