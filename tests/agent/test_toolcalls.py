"""Tool-call parsing from model text: every form small models emit, and the ones that must fail."""

from __future__ import annotations

import pytest

from agent.llm.toolcalls import ToolCallParseError, calls_as_text, parse_tool_calls

KNOWN = {"search_guidelines", "birads_category"}


@pytest.mark.parametrize("text", [
    '<tool_call>\n{"name": "birads_category", "arguments": {"category": "3"}}\n</tool_call>',
    '<tool_call>{"name": "birads_category", "arguments": {"category": "3"}}',  # unclosed tag
    '```json\n{"name": "birads_category", "arguments": {"category": "3"}}\n```',
    '{"name": "birads_category", "arguments": {"category": "3"}}',
    '{"name": "birads_category", "parameters": {"category": "3"}}',
    '{"function": {"name": "birads_category", "arguments": "{\\"category\\": \\"3\\"}"}}',
    '[{"name": "birads_category", "arguments": {"category": "3"}}]',
    '{"name": "birads_category", "arguments": {"category": "3"}} trailing words',
])
def test_accepted_forms(text):
    calls = parse_tool_calls(text, KNOWN)
    assert len(calls) == 1
    assert calls[0].name == "birads_category" and calls[0].arguments == {"category": "3"} and calls[0].id


def test_two_tagged_calls():
    text = ('<tool_call>{"name": "birads_category", "arguments": {"category": "3"}}</tool_call>\n'
            '<tool_call>{"name": "search_guidelines", "arguments": {"query": "BI-RADS 3"}}</tool_call>')
    assert [c.name for c in parse_tool_calls(text, KNOWN)] == ["birads_category", "search_guidelines"]


@pytest.mark.parametrize("text", ["BI-RADS 3 means probably benign [E1].", "", "{not json at all",
                                  '{"answer": "text"}'])
def test_plain_answers_are_not_calls(text):
    assert parse_tool_calls(text, KNOWN) == []


@pytest.mark.parametrize("text,msg", [
    ('<tool_call>{"name": "birads_category", "arguments": {"category": </tool_call>', "not valid JSON"),
    ('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>', "unknown tool"),
    ('{"name": "delete_everything", "arguments": {}}', "unknown tool"),
    ('<tool_call>{"name": "birads_category", "arguments": [1, 2]}</tool_call>', "JSON object"),
    ('<tool_call>{"arguments": {}}</tool_call>', "must hold"),
])
def test_broken_calls_raise(text, msg):
    with pytest.raises(ToolCallParseError, match=msg):
        parse_tool_calls(text, KNOWN)


def test_call_written_inside_prose():
    text = ("To answer, I would call the `birads_category` function with the following arguments:\n"
            "```json\n{\"category\": \"4A\"}\n```\nThis returns the meaning.")
    calls = parse_tool_calls(text, KNOWN)
    assert [(c.name, c.arguments) for c in calls] == [("birads_category", {"category": "4A"})]
    inline = 'Let me look it up: {"name": "search_guidelines", "arguments": {"query": "BI-RADS 3"}} ok'
    assert parse_tool_calls(inline, KNOWN)[0].name == "search_guidelines"


def test_prose_naming_two_tools_is_ambiguous_and_stays_text():
    text = "Either `birads_category` or `search_guidelines` could help:\n```json\n{\"category\": \"3\"}\n```"
    assert parse_tool_calls(text, KNOWN) == []


def test_calls_as_text_writes_calls_as_the_model_does():
    """OpenAI-style string arguments become the compact ``<tool_call>`` JSON the model itself writes."""
    msgs = [{"role": "user", "content": "q"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "birads_category", "arguments": '{"category": "4A", "modality": "mri"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "[E1] ..."}]
    out = calls_as_text(msgs)
    assert out[1] == {"role": "assistant", "content": '<tool_call>\n{"name": "birads_category", "arguments": '
                                                      '{"category": "4A", "modality": "mri"}}\n</tool_call>'}
    assert out[0] is msgs[0] and out[2] is msgs[2] and "tool_calls" in msgs[1]  # input untouched


def test_calls_as_text_keeps_unparseable_arguments_as_written():
    msgs = [{"role": "assistant", "content": "",
             "tool_calls": [{"function": {"name": "search_guidelines", "arguments": "{not json"}}]}]
    assert calls_as_text(msgs)[0]["content"] == ('<tool_call>\n{"name": "search_guidelines", "arguments": '
                                                 '"{not json"}\n</tool_call>')
