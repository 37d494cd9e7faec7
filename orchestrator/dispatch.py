"""Trials handed out, and the results the engine takes back for them.

Any process that reaches the tree actor can call its complete(). A result counts only when it
comes back with the token issued when its trial was dispatched, and it reaches the tree (and
the ledger) only once it passes the sanity checks here; a result that fails them is recorded
as a failure that says what was wrong, so the trial is not lost.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from orchestrator.tree import TrialRecord
from trials.spec import FailureStage, Fingerprint, Placement, TrialResult, TrialState

TOKEN_BYTES = 16
SHOWN_CHARS = 60  # of a reported value quoted in a message: a forged one can be megabytes

_RESULT_FIELDS = frozenset(f.name for f in fields(TrialResult))
# STOPPED is the campaign's own record of a trial it stopped at the end of its wall-clock budget:
# a worker cannot claim it, so no report can pass a trial off as stopped rather than failed.
_FINISHED_STATES = frozenset(s.value for s in TrialState if s.is_finished() and s is not TrialState.STOPPED)
_STAGES = frozenset(s.value for s in FailureStage)
_TEXT_FIELDS = ("message", "log_tail", "worker")
_TIME_FIELDS = ("started_at", "finished_at")
# Field annotations are strings under `from __future__ import annotations`.
_FINGERPRINT_TYPES: dict[str, tuple[type, ...]] = {
    f.name: {"str": (str,), "int": (int,), "float": (int, float)}[str(f.type)] for f in fields(Fingerprint)
}
_PLACEMENT_FIELDS = frozenset(f.name for f in fields(Placement))


@dataclass(frozen=True)
class Dispatch:
    """A trial handed out in this session, and the token its result must come back with."""

    record: TrialRecord
    token: str = field(repr=False)


def new_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


def token_matches(expected: str, given: object) -> bool:
    # compare_digest takes ASCII text only, and a forger chooses what `given` is.
    return isinstance(given, str) and given.isascii() and secrets.compare_digest(expected, given)


def shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}...({len(text)} chars)"


def result_problems(result: object, record: TrialRecord, required: Iterable[str]) -> list[str]:
    """What makes a reported result unfit for the tree and the ledger; empty when it is fit.

    `required` are the metrics a COMPLETE result must hold (the objective and the guards).
    """
    if not isinstance(result, dict):
        return [f"the result is a {type(result).__name__}, not a mapping of trial result fields"]
    problems = []
    unknown = sorted(shown(k) for k in result if k not in _RESULT_FIELDS)
    if unknown:
        problems.append(f"unknown fields {', '.join(unknown[:5])}")
    for name, dispatched in (("trial_id", record.trial_id), ("node_id", record.node_id), ("seed", record.seed)):
        value = result.get(name)
        if type(value) is not type(dispatched) or value != dispatched:
            problems.append(f"{name} is {shown(value)}, but the dispatched trial's is {dispatched!r}")
    state = result.get("state")
    if not isinstance(state, str) or state not in _FINISHED_STATES:
        problems.append(f"state {shown(state)} is not one of {', '.join(sorted(_FINISHED_STATES))}")
    stage = result.get("failure_stage")
    if stage is not None and (not isinstance(stage, str) or stage not in _STAGES):
        problems.append(f"failure_stage {shown(stage)} is not one of {', '.join(sorted(_STAGES))}")
    problems += _metric_problems(result.get("metrics", {}), complete=state == TrialState.COMPLETE.value,
                                 required=required)
    problems += _field_problems(result)
    if not problems:
        try:  # the ledger writes reports as JSON, with no fallback for other objects
            json.dumps(result.get("reports", []))
        except (TypeError, ValueError) as exc:
            problems.append(f"reports do not encode as JSON ({exc})")
    return problems


def _metric_problems(metrics: object, *, complete: bool, required: Iterable[str]) -> list[str]:
    if not isinstance(metrics, dict):
        return [f"metrics is a {type(metrics).__name__}, not a mapping of names to numbers"]
    problems = []
    for name, value in metrics.items():
        if not isinstance(name, str):
            problems.append(f"metric name {shown(name)} is not text")
        elif not _finite(value):
            problems.append(f"metric {shown(name)} is {shown(value)}, not a finite number")
    if complete:
        missing = [name for name in required if name not in metrics]
        if missing:
            problems.append(f"a COMPLETE result lacks the objective or guard metric(s) {', '.join(missing)}")
    return problems


def _field_problems(result: dict[str, Any]) -> list[str]:
    problems = []
    for name in _TEXT_FIELDS:
        if name in result and not isinstance(result[name], str):
            problems.append(f"{name} is {shown(result[name])}, not text")
    for name in _TIME_FIELDS:
        if name in result and not _finite(result[name]):
            problems.append(f"{name} is {shown(result[name])}, not a finite number of seconds")
    if "self_reported" in result and not isinstance(result["self_reported"], bool):
        problems.append(f"self_reported is {shown(result['self_reported'])}, not true or false")
    reports = result.get("reports", [])
    if not isinstance(reports, list) or not all(isinstance(r, dict) for r in reports):
        problems.append("reports is not a list of mappings")
    problems += _placement_problems(result.get("placement", {}))
    fingerprint = result.get("fingerprint", {})
    if not isinstance(fingerprint, dict):
        problems.append(f"fingerprint is a {type(fingerprint).__name__}, not a mapping")
        return problems
    for name, value in fingerprint.items():
        kinds = _FINGERPRINT_TYPES.get(name) if isinstance(name, str) else None
        if kinds is None:
            problems.append(f"fingerprint field {shown(name)} is unknown")
        elif isinstance(value, bool) or not isinstance(value, kinds):
            problems.append(f"fingerprint {name} is {shown(value)}, not {kinds[-1].__name__}")
    return problems


def _placement_problems(placement: object) -> list[str]:
    if not isinstance(placement, dict):
        return [f"placement is a {type(placement).__name__}, not a mapping"]
    problems = []
    for name, value in placement.items():
        if name not in _PLACEMENT_FIELDS:
            problems.append(f"placement field {shown(name)} is unknown")
        elif not isinstance(value, str):
            problems.append(f"placement {name} is {shown(value)}, not text")
    return problems


def lost_placement(placement: object) -> dict[str, str] | None:
    """Where a lost trial ran, as its bridge reported it; None when unknown or not a placement
    (nothing but the token vouches for it, and a lost trial's record must not fail on it)."""
    if not placement or _placement_problems(placement):
        return None
    assert isinstance(placement, dict)
    return {name: value for name, value in placement.items() if value}


def _finite(value: object) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int past float's range
        return False
