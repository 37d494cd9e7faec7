"""A change: the one edit that turns a parent node into a child (a params delta or a code diff),
and its claim: what the edit changes, stated as data (which knob, from what, to what)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ChangeKind = Literal["params", "code"]
Value = str | int | float | bool | None
DIRECTIONS = ("up", "down", "add", "remove", "replace", "set")


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
