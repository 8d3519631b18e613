"""Which earlier messages of a case the model sees: recent whole turns that were answered, within a budget."""

from __future__ import annotations

from typing import Any

HISTORY_CHARS = 12000  # history kept in the prompt (characters, ~3.5 per token); older turns are dropped
WIRE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")


def without_failed_turns(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``msgs`` minus every earlier turn that ended without an answer (a timeout, a dead server).

    A failed turn is not part of the conversation: a small model shown "I could not complete this
    answer: the language model timed out" copies it into every later answer of the case.
    """
    def answered(turn: list[dict[str, Any]]) -> bool:
        return any(m.get("role") == "assistant" and m.get("meta") == "answer" for m in turn) \
            and not any(m.get("meta") == "error" for m in turn)

    out: list[dict[str, Any]] = []
    turn: list[dict[str, Any]] = []
    for m in msgs:
        if m.get("role") == "user" and "question" in m and turn:
            out += turn if answered(turn) else []
            turn = []
        turn.append(m)
    return out + (turn if answered(turn) else [])


def prompt_messages(all_msgs: list[dict[str, Any]], turn_start: int, system: str) -> list[dict[str, Any]]:
    """System prompt + this turn + as much recent, answered history as fits :data:`HISTORY_CHARS`,
    cut at a user-turn boundary. Only the keys a chat API takes are kept."""
    msgs = without_failed_turns(all_msgs[:turn_start]) + all_msgs[turn_start:]
    start = len(msgs) - (len(all_msgs) - turn_start)
    kept = msgs[start:]
    size = sum(len(str(m.get("content") or "")) for m in kept)
    i = start
    while i > 0:
        # walk back to the previous user message; keep whole turns only
        j = i - 1
        while j > 0 and msgs[j]["role"] != "user":
            j -= 1
        chunk = msgs[j:i]
        chunk_size = sum(len(str(m.get("content") or "")) for m in chunk)
        if size + chunk_size > HISTORY_CHARS:
            break
        kept = chunk + kept
        size += chunk_size
        i = j
    return [{"role": "system", "content": system}] + [{k: v for k, v in m.items() if k in WIRE_KEYS} for m in kept]
