"""Admission: whether a proposal may become a node, as a value the engine carries out.

`screen` reads the campaign's memory and the workspace but changes nothing and journals
nothing: the engine records the proposal, teaches the memory what `Admission` says it should
remember, and creates the node. The checks of one hyperparameter value and of an aspect live
here too, so a config's default, an injected change, an LLM's suggestion and a proposal are
held to the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from orchestrator import integration
from orchestrator.change import Change
from orchestrator.config import ASPECTS, CampaignConfig, ParamConfig
from orchestrator.memory import Entry, Memory
from trials.patch import diff_notes, size_problem

if TYPE_CHECKING:
    from orchestrator.engine import Workspace
    from orchestrator.tree import Node


@dataclass(frozen=True)
class Admission:
    """The screening of one proposal: accepted, or rejected with the reason its proposer is shown."""

    reason: str  # "" when accepted
    duplicate_of: str | None = None  # the earlier proposal it repeats
    memory: dict[str, Any] = field(default_factory=dict)  # the memory's verdict (empty: not consulted)
    key: str = ""  # the memory's exact key ("" when the memory never built an entry)
    notes: tuple[str, ...] = ()  # what a reviewer should know of an admissible diff (a mode change)
    remember: Entry | None = None  # an idea judged or tested: the memory blocks repeats of it
    invalid: bool = False  # screened out as invalid: only its exact key is blocked

    @property
    def accepted(self) -> bool:
        return not self.reason


def screen(
    config: CampaignConfig,
    memory: Memory,
    invalid_keys: Mapping[str, str],
    workspace: Workspace,
    parent: Node,
    change: Change,
) -> Admission:
    """Screen a proposal against the limits, the memory, earlier invalid proposals and the rules.

    `invalid_keys` maps the exact key of each proposal screened out as invalid to its id.
    """
    code = change.kind == "code"
    # Size first: the memory's keys and git read the whole diff, a hostile one of megabytes
    # or 100,000 lines would stall the campaign there.
    too_large = size_problem(change.diff, config.limits) if code else ""
    if too_large:
        return Admission(too_large)
    notes = tuple(diff_notes(change.diff)) if code else ()
    # A graft re-applies changes already tried, on purpose: memory does not judge it.
    if change.proposer == integration.PROPOSER:
        return Admission(change_problem(config, workspace, parent, change), notes=notes)
    sources = workspace.sources(parent, change) if code else None
    entry = memory.entry(change, parent.node_id, parent.params, sources, lineage=parent.chain)
    verdict = memory.check(entry)
    seen = Admission("", memory=verdict.to_dict(), key=entry.key, notes=notes)
    if verdict.duplicate:
        reason = f"duplicate of {verdict.duplicate_of}: {verdict.reason}"
        return replace(seen, reason=reason, duplicate_of=verdict.duplicate_of, remember=entry)
    if entry.key in invalid_keys:
        return replace(seen, reason=f"repeats {invalid_keys[entry.key]}, which was rejected as invalid")
    reason = change_problem(config, workspace, parent, change)
    # Memory holds ideas that were judged or tested; an invalid diff only blocks itself, so a
    # repaired version of the same idea can still come in.
    if reason:
        return replace(seen, reason=reason, invalid=True)
    return replace(seen, remember=entry)


def change_problem(config: CampaignConfig, workspace: Workspace, parent: Node, change: Change) -> str:
    """Why the change breaks the rules of a change ("" when it does not)."""
    graft = change.proposer == integration.PROPOSER  # a graft combines changes of any aspect
    if change.kind == "params":
        if not graft:
            problem = delta_problem(change.params)
            if problem:
                return problem
        for name, value in change.params.items():
            problem = param_problem(config.params, name, value)
            if problem:
                return problem
        return ""
    if not graft:
        problem = aspect_problem(change.aspect)
        if problem:
            return problem
    return workspace.check(parent, change)


# ----- one hyperparameter, one aspect ----------------------------------------------------------
class Fault(StrEnum):
    """What is wrong with a value for a declared hyperparameter."""

    NOT_A_CHOICE = "not a choice"
    NOT_A_NUMBER = "not a number"
    OUT_OF_RANGE = "out of range"
    NOT_AN_INTEGER = "not an integer"


def compact(number: float) -> str:
    """A bound as a person writes it (0 and 6, not 0.0 and 6.0)."""
    return f"{number:g}"


def delta_problem(params: Mapping[str, Any]) -> str:
    """Why a params delta is not a change of one hyperparameter ("" when it is)."""
    if len(params) == 1:
        return ""
    return f"changes {len(params)} hyperparameters at once; a change alters exactly one hyperparameter"


def param_problem(
    params: Mapping[str, ParamConfig], name: str, value: Any, *, number: Callable[[float], str] = str
) -> str:
    """Why `name=value` cannot be a node's setting ("" when it can); `number` writes the bounds."""
    spec = params.get(name)
    if spec is None:
        declared = ", ".join(sorted(params)) or "none"
        return f"unknown hyperparameter {name!r}: not declared in the config (declared: {declared})"
    problem = value_problem(spec, value, number=number)
    return f"{name}={problem}" if problem else ""


def value_problem(spec: ParamConfig, value: Any, *, number: Callable[[float], str] = str) -> str:
    """Why the value is not one the declaration allows ("" when it is), starting with the value."""
    fault = value_fault(spec, value)
    if fault is None:
        return ""
    if fault is Fault.NOT_A_CHOICE:
        return f"{value!r} is not one of {spec.values}"
    assert spec.low is not None and spec.high is not None
    bounds = f"[{number(spec.low)}, {number(spec.high)}]"
    if fault is Fault.NOT_A_NUMBER:
        return f"{value!r} is outside {bounds}: a number is expected"
    if fault is Fault.OUT_OF_RANGE:
        return f"{value!r} is outside {bounds}"
    return f"{value!r} is not whole: an integer is expected"


def value_fault(spec: ParamConfig, value: Any) -> Fault | None:
    """What is wrong with the value for the declaration (None: nothing)."""
    if spec.type == "choice":
        return None if _choice_index(spec, value) is not None else Fault.NOT_A_CHOICE
    # A bool is an int to Python, but true is no learning rate.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return Fault.NOT_A_NUMBER
    assert spec.low is not None and spec.high is not None
    if not spec.low <= value <= spec.high:
        return Fault.OUT_OF_RANGE
    if spec.type == "int" and int(value) != value:
        return Fault.NOT_AN_INTEGER
    return None


def declared_value(spec: ParamConfig, value: Any) -> Any:
    """A value with no fault, as the declaration types it: an int for an int, a choice as listed."""
    if spec.type == "choice":
        index = _choice_index(spec, value)
        assert index is not None, f"{value!r} is not a choice"
        return (spec.values or [])[index]
    return int(value) if spec.type == "int" else float(value)


def _choice_index(spec: ParamConfig, value: Any) -> int | None:
    for i, declared in enumerate(spec.values or []):
        # True == 1 in Python, but a bool is not the choice 1.
        if isinstance(declared, bool) == isinstance(value, bool) and declared == value:
            return i
    return None


def aspect_problem(aspect: object) -> str:
    """Why a code change's declared aspect is not exactly one of ASPECTS ("" when it is)."""
    if isinstance(aspect, str) and aspect in ASPECTS:
        return ""
    named = [str(a) for a in aspect] if isinstance(aspect, list) else [a for a in ASPECTS if a in str(aspect)]
    if len(named) > 1:
        return (
            f"declares several aspects ({', '.join(named)}); a change has exactly one aspect: "
            "split it into separate changes"
        )
    if aspect is None or aspect == "":
        return f"missing aspect; use one of {', '.join(ASPECTS)}"
    return f"aspect {aspect!r} is not one of {', '.join(ASPECTS)}"
