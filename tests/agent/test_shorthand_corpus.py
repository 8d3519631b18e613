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


def test_token_soup_never_breaks_the_reader_or_the_calculator_arguments():
    """Random shorthand tokens in random order (seeded): every frame reads, every planned calculator call
    validates, and a second turn merges."""
    import random

    from agent.frame import plan_for, read_case
    from tools.calculators import run_calculator

    tokens = ("67M F 62 1/2 ppd x 45 yrs quit 2010 ago BR3 LR 4X cat 2 on US mammo CT A/P for PE 8x6 mm cm 1.2 ~4 "
              "solid bit part subsolid GGN nodule nodules RUL spiculated hx melanoma s/p OHT MMF HIV+ f/u? and? ok so "
              "previously now 7 5 stable new LDCT screening eligible USPSTF PY 40 never smoker former current category "
              "6 4A 4B 4C S modifier breast lung - , : w/ since age 20 denies tobacco")
    rng = random.Random(20)
    for _ in range(600):
        words = tokens.split()
        question = " ".join(rng.choice(words) for _ in range(rng.randint(1, 14)))
        frame = read_case(question, None)
        for name, args in plan_for(frame, question, [], False).calls:
            if name != "search_guidelines":
                run_calculator(name, args)  # raises on invalid arguments
        read_case(" ".join(rng.choice(words) for _ in range(rng.randint(1, 6))), None, frame)
