"""Drafted greedy decoding: the schema drafter's guesses, and, with the real packaged 0.5B model, that
drafting changes the speed of decoding but not what is decoded (right, wrong and no guesses)."""

from __future__ import annotations

import time

import pytest

from agent.llm.gguf import GGUFBackend
from agent.llm.speculative import CallDrafter, DecodeStats, call_complete, greedy_decode
from agent.llm.toolcalls import CALL_HEAD
from agent.prompts import render
from tests.agent.fakes import default_tools
from tests.agent.llm_fixtures import qwen_path  # noqa: F401 - fixture

SCHEMAS = {name: tool.schema().parameters for name, tool in default_tools().items()}
FLEISCHNER_CALL = ('fleischner_followup", "arguments": {"size_mm": 7, "nodule_type": "solid", '
                   '"solid_component_mm": null, "multiple": false, "risk": "low", "patient_age_years": 60, '
                   '"lung_cancer_screening": false, "known_primary_cancer": false, "immunocompromised": false, '
                   '"typical_perifissural": false, "status": null, "stable_months": null}}')


def replay(drafter: CallDrafter, target: str) -> tuple[int, int]:
    """Decode ``target`` one character at a time, taking each guess that matches: (steps, guesses taken)."""
    i = steps = taken = 0
    while i < len(target):
        guess = drafter.draft(target[:i])
        steps += 1
        if guess and target[i:].startswith(guess):
            i += len(guess) + 1  # the guess, and the model's next token after it
            taken += 1
        else:
            i += 1
    return steps, taken


def test_drafter_guesses_keys_punctuation_and_unstated_flags():
    d = CallDrafter(SCHEMAS)
    steps, taken = replay(d, FLEISCHNER_CALL)
    assert taken >= 5 and steps < len(FLEISCHNER_CALL) // 5
    # the model's own choices are never guessed: required values and numbers the question may state
    assert d.draft('fleischner_followup", "arguments": {"size_mm":') == ""
    assert d.draft('fleischner_followup", "arguments": {"size_mm": 7,') == ' "nodule_type": "'
    # after the last stated value the unstated flags follow, up to an optional key whose value may be null
    assert d.draft(FLEISCHNER_CALL.split(', "lung_cancer')[0] + ",").endswith('"typical_perifissural": false, '
                                                                               '"status":')
    assert d.draft(FLEISCHNER_CALL.split(', "stable_months')[0] + ",") == ' "stable_months":'
    assert d.draft(FLEISCHNER_CALL.split('}}')[0]) == "}}"  # every key written: the object closes


def test_drafter_completes_names_and_enum_values_only_when_unambiguous():
    d = CallDrafter(SCHEMAS)
    assert d.draft("") == ""
    assert d.draft("search_") == ""  # search_guidelines or search_prior_reports
    assert d.draft("search_g").startswith('uidelines", "arguments": {"query": "')
    assert d.draft('birads_category", "arguments": {"category": "4') == ""  # 4, 4A, 4B or 4C
    assert d.draft('lung_rads_category", "arguments": {"nodule_type": "part').startswith('_solid", "size_mm":')
    assert d.draft('search_guidelines", "arguments": {"query": "nodule,') == ""  # a comma inside a string
    assert d.draft('no_such_tool", "arguments": {"a": 1,') == ""


@pytest.mark.parametrize("body, done", [
    ('x", "arguments": {"a": 1}}', True),
    ('x", "arguments": {"a": "}}"', False),
    ('x", "arguments": {"a": {"b": 1}}', False),
    ('x", "arguments": {"a": "q\\"}}"}}', True),
])
def test_call_complete(body, done):
    assert call_complete(body) is done


@pytest.fixture(scope="module")
def backend(qwen_path, tmp_path_factory):  # noqa: F811
    # threads fixed: the float reduction order (and so a near-tie) depends on the thread count, not the load
    b = GGUFBackend(qwen_path, n_ctx=4096, n_threads=2, max_tokens=64, timeout_s=300)
    b._load()
    yield b
    b.close()


def call_prompt(backend: GGUFBackend, question: str) -> tuple[list[int], list[str]]:
    tools = [t.schema() for t in default_tools().values()]
    prompt, stop = backend.render([{"role": "system", "content": render("system")},
                                   {"role": "user", "content": question}], tools)
    return backend._llm.tokenize((prompt + CALL_HEAD).encode(), add_bos=False, special=True), stop


def decode(backend, tokens, stop, drafter=None, stats=None):
    backend._llm.n_tokens = 0  # no cache: each decode starts alike
    return greedy_decode(backend._llm, tokens, max_tokens=160, stop=stop, deadline=time.perf_counter() + 300,
                         timeout_s=300, drafter=drafter, stats=stats)[0]


def test_drafting_does_not_change_the_decoded_call(backend):
    # a question without a near-tie between two tokens: a batch and a single step may round a logit
    # differently, so a near-tie can flip either way (seen: solid_component_mm 0 vs 6 for a 6 mm nodule; and,
    # once the tool descriptions grew, '}}' vs ', "required"' after the last argument of a 7 mm low-risk call)
    tokens, stop = call_prompt(backend, "Fleischner follow-up for a single 7 mm solid nodule in a high-risk "
                                        "70-year-old smoker?")
    plain = decode(backend, tokens, stop)
    stats = DecodeStats()
    drafted = decode(backend, tokens, stop, CallDrafter(SCHEMAS).draft, stats)
    assert drafted == plain
    assert plain.startswith('fleischner_followup", "arguments": {"size_mm": 7,')  # (the 0.5b's later keys may not parse)
    # the 0.5b writes some keys of another tool here, so fewer guesses hold than for a clean call
    assert stats.accepted > 20 and stats.steps < stats.tokens * 0.7


def test_wrong_guesses_are_rolled_back(backend):
    """A drafter that is always wrong costs time but leaves the output (and the KV cache) as without it."""
    tokens, stop = call_prompt(backend, "What does BI-RADS 3 mean?")
    plain = decode(backend, tokens, stop)
    stats = DecodeStats()
    assert decode(backend, tokens, stop, lambda text: " banana banana banana", stats) == plain
    assert stats.drafted > 0 and stats.accepted < stats.drafted


def test_same_result_as_llama_cpp_sampler(backend):
    """Our greedy loop agrees with llama-cpp-python's own greedy decoding."""
    tokens, stop = call_prompt(backend, "Lung-RADS category for a new 5 mm solid nodule?")
    backend._llm.reset()
    ref = backend._llm.create_completion(tokens, max_tokens=40, temperature=0.0, top_k=1, stop=stop)
    ours = decode(backend, tokens, stop, CallDrafter(SCHEMAS).draft)
    assert ours.startswith(ref["choices"][0]["text"][:40])
