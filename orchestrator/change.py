"""A change: the one edit that turns a parent node into a child (a params delta or a code diff)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ChangeKind = Literal["params", "code"]


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

    def describe(self) -> str:
        if self.kind == "params":
            delta = ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.params.items()))
            return f"params {delta}"
        return f"code [{self.aspect}] {self.hypothesis}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Change:
        return cls(**data)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
