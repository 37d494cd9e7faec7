"""One LLM batch: ask for K proposals as JSON, check each, send the failures back for repair.

The caller (a code or a params drafter) says how to check one item; this module owns the
conversation: parsing the reply, the repair rounds, and what happens when the LLM or the spend
cap stops it halfway (what was already validated is kept).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.change import Change
from orchestrator.proposers.llm import LLMClient, LLMError, SpendCapReached

# Check one proposed item: (the change, "") when valid, else (None, why not).
ItemCheck = Callable[[dict[str, Any]], tuple[Change | None, str]]

_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(.*)\n```\s*$", re.DOTALL)


@dataclass
class BatchResult:
    changes: list[Change] = field(default_factory=list)
    invalid: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (item, why it was rejected)
    notes: list[str] = field(default_factory=list)
    capped: bool = False  # the spend cap stopped the batch


def parse_proposals(text: str) -> tuple[list[dict[str, Any]], str]:
    """The proposal items of a reply, or ([], what is wrong with it)."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        return [], f"the reply is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    if isinstance(data, dict):
        data = data.get("proposals")
    if not isinstance(data, list):
        return [], 'the reply must be a JSON object {"proposals": [...]}'
    items = [item for item in data if isinstance(item, dict)]
    if len(items) != len(data):
        return [], "each proposal must be a JSON object"
    return items, ""  # an empty list is a valid answer: nothing worth proposing


def draft_batch(
    client: LLMClient,
    messages: list[dict[str, str]],
    check: ItemCheck,
    *,
    k: int,
    max_repairs: int,
    purpose: str,
    item_label: Callable[[dict[str, Any]], str],
) -> BatchResult:
    """Up to k valid changes from one call plus at most max_repairs repair calls.

    Raises LLMError only when the first call fails; later failures end the batch with a note.
    """
    result = BatchResult()
    conversation = list(messages)
    outstanding: list[tuple[dict[str, Any], str]] = []  # failed items not yet repaired
    repairs = 0  # repair rounds answered
    for round_ in range(max_repairs + 1):
        try:
            reply = client.complete(conversation, purpose=purpose if round_ == 0 else f"{purpose} repair {round_}")
        except SpendCapReached as exc:
            result.capped = True
            result.notes.append(str(exc))
            if round_ == 0:
                raise
            break
        except LLMError as exc:
            if round_ == 0:
                raise
            result.notes.append(f"repair round {round_} failed: {exc}")
            break
        repairs = round_
        items, problem = parse_proposals(reply.text)
        conversation.append({"role": "assistant", "content": reply.text})
        if problem:
            result.notes.append(f"malformed LLM reply ({problem}); " + (
                "asking again" if round_ < max_repairs else "no repair attempts left"))
            conversation.append({"role": "user", "content": (
                f"Your reply could not be used: {problem}. Reply with only the JSON object "
                '{"proposals": [...]} as specified, nothing else.'
            )})
            continue
        share = reply.call.cost_usd / max(1, len(items))
        failures: list[tuple[dict[str, Any], str]] = []
        for item in items:
            change, reason = check(item)
            if change is None:
                failures.append((item, reason))
            elif len(result.changes) < k:
                result.changes.append(_with_cost(change, share))
        # A repair reply answers the outstanding items in order; those it left out stay invalid.
        outstanding = failures + (outstanding[len(items):] if round_ else [])
        if not failures or len(result.changes) >= k or round_ == max_repairs:
            break
        lines = [f"{i + 1}. {item_label(item)}: {reason}" for i, (item, reason) in enumerate(failures)]
        conversation.append({"role": "user", "content": (
            "These proposals were rejected:\n" + "\n".join(lines)
            + '\nSend corrected versions of only these, in the same JSON format {"proposals": [...]}. '
            "Keep each to one change of one aspect."
        )})
    # Every item left invalid is a rejected proposal the ledger must show, also when the batch
    # filled up with valid ones and so never sent it back for repair.
    if repairs:
        why = f"still invalid after {repairs} repair round(s)"
    elif len(result.changes) >= k:
        why = f"not sent for repair, the batch held its {k} valid proposal(s) without it"
    else:
        why = "not repaired"
    result.invalid.extend((item, f"{why}: {reason}") for item, reason in outstanding)
    return result


def _with_cost(change: Change, cost: float) -> Change:
    data = change.to_dict()
    data["cost_usd"] = round(cost, 10)
    return Change.from_dict(data)
