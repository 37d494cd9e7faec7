"""A change: the one edit that turns a parent node into a child (a params delta or a code diff),
and its claim: what the edit changes, stated as data (which knob, from what, to what)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ChangeKind = Literal["params", "code"]
Value = str | int | float | bool | None
DIRECTIONS = ("up", "down", "add", "remove", "replace", "set")
# A claim as proposals write it (an LLM's JSON, a hypotheses file): `from` and `to` are the
# Claim's `before` and `after`.
CLAIM_FIELDS = ("knob", "from", "to", "direction", "scope")
MAX_KNOB_CHARS = 64  # a name, not a sentence: the hypothesis says why
MAX_CLAIM_TEXT = 200  # a value or a scope written as text


@dataclass(frozen=True)
class Claim:
    """What a change changes. Values decide what counts as the same experiment: the same knob
    set to the same value is a repeat, to another value another step of a sweep.

    A params change's claim follows from its delta and the parent's params; an LLM proposer
    states it in its JSON; a hypothesis in words is parsed into one (orchestrator/memory/claims.py).
    """

    knob: str  # the knob or mechanism, normalized: "matrix_lr", "value_embeddings"
    before: Value = None  # its value on the parent, when known
    after: Value = None  # its value after the change, when the change sets one
    direction: str = ""  # one of DIRECTIONS, or "" when not said
    scope: str = ""  # where it applies, when only part of the model ("attention", "layers 0-5")

    def describe(self) -> str:
        move = f"{_short(self.before)} -> {_short(self.after)}" if self.before is not None and self.after is not None \
            else f"= {_short(self.after)}" if self.after is not None else self.direction
        where = f" in {self.scope}" if self.scope else ""
        return f"{self.knob}{where} {move}".strip()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Claim:
        return cls(**data)


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    aspect: str  # a hyperparameter name for params changes; a declared aspect for code
    hypothesis: str
    proposer: str
    params: dict[str, Any] = field(default_factory=dict)  # params: the delta (one key)
    diff: str = ""  # code: a unified diff
    source_id: str = ""  # the proposer's own id for it (a queue item id, a searcher trial id)
    cost_usd: float = 0.0
    claim: Claim | None = None  # what it changes, when the proposer said so (params: derived)

    def describe(self) -> str:
        if self.kind == "params":
            delta = ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.params.items()))
            return f"params {delta}"
        return f"code [{self.aspect}] {self.hypothesis}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Change:
        claim = data.get("claim")
        if isinstance(claim, dict):
            data = {**data, "claim": Claim.from_dict(claim)}
        return cls(**data)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def read_claim(
    raw: object, *, delta: Mapping[str, Any] | None = None, parent_params: Mapping[str, Any] | None = None,
) -> tuple[Claim | None, str]:
    """The claim a proposal states ({knob, from, to, direction, scope}), or (None, what is wrong).

    The one check of a stated claim: LLM replies, hypotheses files and the inbox all use it, so
    a claim means the same wherever it came from. With `delta`, the proposal is a params change:
    the claim must name its parameter and, when it says `to`, its value; what is returned is
    derived from the delta and `parent_params` (they are the truth), keeping the stated scope.
    A params change may state no claim (raw None): it is derived all the same.
    """
    if raw is None and delta is not None:
        return params_claim(delta, parent_params or {}), ""
    if not isinstance(raw, Mapping):
        return None, "claim must be a mapping with knob, from, to, direction, scope"
    unknown = sorted(str(k) for k in raw if k not in CLAIM_FIELDS)
    if unknown:
        return None, f"claim has unknown field(s) {', '.join(unknown)}; its fields are {', '.join(CLAIM_FIELDS)}"
    knob = raw.get("knob")
    if not isinstance(knob, str) or not knob.strip():
        return None, "claim.knob must be a non-empty name (the knob or mechanism changed)"
    if len(knob.strip()) > MAX_KNOB_CHARS:
        return None, f"claim.knob is {len(knob.strip())} characters; a knob is a name of at most {MAX_KNOB_CHARS}"
    values: dict[str, Value] = {}
    for name in ("from", "to"):
        value = raw.get(name)
        problem = _value_problem(value)
        if problem:
            return None, f"claim.{name} {problem}"
        values[name] = value
    direction = raw.get("direction") or ""
    if not isinstance(direction, str) or direction not in ("", *DIRECTIONS):
        return None, f"claim.direction {direction!r} is not one of {', '.join(DIRECTIONS)} (or empty)"
    scope = raw.get("scope") or ""
    if not isinstance(scope, str) or len(scope) > MAX_CLAIM_TEXT:
        return None, f"claim.scope must be a short text (at most {MAX_CLAIM_TEXT} characters) or empty"
    if delta is not None:
        ((param, value),) = delta.items()
        if knob.strip() != param:
            return None, f"claim.knob {knob.strip()!r} is not the parameter the change sets ({param})"
        if raw.get("to") is not None and not _same(values["to"], value):
            return None, f"claim.to {values['to']!r} is not the value the change sets ({param}={value!r})"
        return params_claim(delta, parent_params or {}, scope=scope.strip()), ""
    return Claim(
        knob=_normalized_knob(knob), before=values["from"], after=values["to"], direction=direction,
        scope=scope.strip(),
    ), ""


def params_claim(delta: Mapping[str, Any], parent_params: Mapping[str, Any], *, scope: str = "") -> Claim:
    """A params change's claim: its parameter, from the parent's value to the new one."""
    ((param, value),) = delta.items()
    before, after = _scalar(parent_params.get(param)), _scalar(value)
    return Claim(knob=param, before=before, after=after, direction=_direction(before, after), scope=scope)


def claim_dict(claim: Claim) -> dict[str, Any]:
    """A claim as proposals write it (the inverse of read_claim for a code change)."""
    return {"knob": claim.knob, "from": claim.before, "to": claim.after, "direction": claim.direction,
            "scope": claim.scope}


def _value_problem(value: object) -> str:
    if value is None or isinstance(value, bool | int):
        return ""
    if isinstance(value, float):
        return "" if math.isfinite(value) else "must be a finite number"
    if isinstance(value, str):
        return "" if len(value) <= MAX_CLAIM_TEXT else f"is text of more than {MAX_CLAIM_TEXT} characters"
    return f"must be a number, a short text, true/false or null (got a {type(value).__name__})"


def _same(a: object, b: object) -> bool:
    # True == 1 in Python, but a flag is not the number 1.
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _scalar(value: Any) -> Value:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return str(value)  # a structured choice: named by its text


def _direction(before: Value, after: Value) -> str:
    if _number(before) and _number(after) and before != after:
        assert isinstance(before, int | float) and isinstance(after, int | float)
        return "up" if after > before else "down"
    return "set"


def _number(value: Value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _normalized_knob(knob: str) -> str:
    """Lower-case words joined by underscores: 'Value Embeddings' and 'value_embeddings' are one knob."""
    return re.sub(r"[\s\-]+", "_", knob.strip().lower())
