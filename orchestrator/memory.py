"""Anti-repetition memory: every proposal is remembered, and an equivalent one is rejected
before it costs compute, with a pointer to what it repeats.

Equivalence here is exact: the canonical params delta, or the diff's changed lines with
whitespace and comment-only lines dropped.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from orchestrator.change import Change

_COMMENT = re.compile(r"^\s*(#|//)")


def canonical_key(change: Change) -> str:
    if change.kind == "params":
        delta = {k: _canonical_value(v) for k, v in sorted(change.params.items())}
        return "params:" + json.dumps(delta, sort_keys=True)
    return "code:" + hashlib.sha256(_normalized_diff(change.diff).encode()).hexdigest()


def _canonical_value(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}")  # 0.1 and 0.1000000001 are the same idea
    return value


def _normalized_diff(diff: str) -> str:
    kept = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")) or not line.startswith(("+", "-")):
            continue
        body = line[1:]
        if not body.strip() or _COMMENT.match(body):
            continue
        kept.append(line[0] + "".join(body.split()))
    return "\n".join(kept)


class Memory:
    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def duplicate_of(self, change: Change) -> str | None:
        """The id of the earlier proposal this one repeats, if any."""
        return self._seen.get(canonical_key(change))

    def remember(self, change: Change, proposal_id: str) -> None:
        self._seen.setdefault(canonical_key(change), proposal_id)

    def __len__(self) -> int:
        return len(self._seen)
