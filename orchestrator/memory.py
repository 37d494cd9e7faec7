"""Anti-repetition memory: every proposal is remembered, and one that repeats an earlier idea is
rejected before it costs compute, with a pointer to what it repeats.

Levels, in order (docs/memory.md):
1. exact: the canonical params delta, or the code change's AST-normalized edit;
2. structural: a params value within `param_tolerance` of one tried; a code change of the same
   target in the same direction, with the same aspect, on the same parent;
3. text: hypotheses that say the same thing in other words (lexical, memory_text.py);
4. embedding: the same, by cosine similarity of embeddings, when a model is configured.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator.change import Change
from orchestrator.config import MemoryConfig
from orchestrator.memory_code import code_key
from orchestrator.memory_text import Text, analyze, bound, compatible, similarity

Embed = Callable[[list[str]], list[list[float]]]
_GENERATED = re.compile(r"^set \S+ from .+ to .+$")  # hypotheses params searchers write
NEAREST_SCORED = 50
MAX_CANDIDATES = 800  # text comparisons per check at most: the most recent sharing a rare word


@dataclass(frozen=True)
class MemoryVerdict:
    kind: str  # new | exact | structural | text | embedding
    duplicate_of: str | None
    score: float
    reason: str
    nearest: str | None

    @property
    def duplicate(self) -> bool:
        return self.kind != "new"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Entry:
    """A proposal in the form the memory compares."""

    key: str
    kind: str  # params | code
    parent_id: str
    aspect: str
    hypothesis: str
    text: Text | None  # None: a generated hypothesis, judged on its delta alone
    structure: tuple[Any, ...] | None
    param: tuple[str, float] | None  # (name, numeric value) of a params change


def canonical_params(params: Mapping[str, Any]) -> str:
    delta = {k: _canonical_value(v) for k, v in sorted(params.items())}
    return "params:" + json.dumps(delta, sort_keys=True, default=str)


def _canonical_value(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}")  # 0.1 and 0.1000000001 are the same idea
    return value


class Memory:
    def __init__(self, config: MemoryConfig | None = None, embed: Embed | None = None) -> None:
        self.config = config or MemoryConfig()
        self._embed = embed if self.config.embedding_model or embed else None
        self._exact: dict[str, str] = {}
        self._structure: dict[tuple[Any, ...], str] = {}
        self._values: dict[str, list[tuple[float, str]]] = defaultdict(list)
        self._entries: dict[str, Entry] = {}
        self._postings: dict[str, list[str]] = defaultdict(list)  # token -> proposal ids, oldest first
        self._vectors: dict[str, list[float]] = {}

    # ----- building entries ---------------------------------------------------------------
    def entry(
        self,
        change: Change,
        parent_id: str,
        parent_params: Mapping[str, Any],
        sources: Mapping[str, tuple[str, str]] | None = None,
        key: str | None = None,
    ) -> Entry:
        generated = change.kind == "params" and bool(_GENERATED.match(change.hypothesis))
        text = None if generated or change.kind == "params" else analyze(change.hypothesis)
        structure: tuple[Any, ...] | None = None
        param = None
        if change.kind == "params":
            key = key or canonical_params(change.params)
            if len(change.params) == 1:
                (name, value), = change.params.items()
                if isinstance(value, int | float) and not isinstance(value, bool):
                    param = (name, float(value))
        else:
            key = key or code_key(change.diff, sources)
            assert text is not None
            directions = text.directions & {"increase", "decrease", "add", "remove"}
            if text.targets and len(directions) == 1:
                structure = (parent_id, change.aspect, text.targets, next(iter(directions)))
        return Entry(
            key=key, kind=change.kind, parent_id=parent_id, aspect=change.aspect, hypothesis=change.hypothesis,
            text=text, structure=structure, param=param,
        )

    # ----- judging -----------------------------------------------------------------------
    def check(self, entry: Entry) -> MemoryVerdict:
        earlier = self._exact.get(entry.key)
        if earlier is not None:
            return self._verdict("exact", earlier, 1.0, "the same change")
        if self.config.structural:
            hit = self._structural(entry)
            if hit is not None:
                return hit
        if entry.text is None or not entry.text.tokens:
            return MemoryVerdict("new", None, 0.0, "", None)
        best, best_score = None, 0.0
        threshold = self.config.text_threshold
        for rank, candidate in enumerate(self._candidates(entry)):
            other = self._entries[candidate].text
            if other is None:
                continue
            # Past the most recent few (scored for the log's "nearest"), only a possible duplicate
            # is worth scoring.
            ceiling = bound(entry.text, other)
            if ceiling <= best_score or (rank >= NEAREST_SCORED and ceiling < threshold):
                continue
            score = similarity(entry.text, other)
            if score > best_score:
                best, best_score = candidate, score
        if best is not None and best_score >= self.config.text_threshold:
            return self._verdict("text", best, best_score, f"says the same thing (similarity {best_score:.2f})")
        hit = self._embedding(entry)
        if hit is not None:
            return hit
        return MemoryVerdict("new", None, round(best_score, 4), "", best)

    def _structural(self, entry: Entry) -> MemoryVerdict | None:
        if entry.structure is not None and entry.structure in self._structure:
            earlier = self._structure[entry.structure]
            _, aspect, targets, direction = entry.structure
            what = f"{direction} {', '.join(sorted(targets))} ({aspect}) on {entry.parent_id}"
            return self._verdict("structural", earlier, 1.0, f"the same move, {what}")
        if entry.param is not None and self.config.param_tolerance > 0:
            name, value = entry.param
            values = self._values.get(name, [])
            tol = self.config.param_tolerance
            low, high = sorted((value / (1 + tol), value * (1 + tol))) if value > 0 else (
                value - tol * abs(value), value + tol * abs(value))
            start = bisect.bisect_left(values, (low, ""))
            for other, proposal_id in values[start:start + 64]:  # sorted: the close ones come first
                if other > high:
                    break
                if _close(value, other, tol):
                    return self._verdict(
                        "structural", proposal_id, 1.0,
                        f"{name}={value:.6g} is within {self.config.param_tolerance:.0%} of {other:.6g}, already tried",
                    )
        return None

    def _candidates(self, entry: Entry) -> list[str]:
        assert entry.text is not None
        # Rare words find an earlier paraphrase; very common ones would only cost time.
        ranked = sorted((t for t in entry.text.tokens if t in self._postings), key=lambda t: len(self._postings[t]))
        seen: dict[str, None] = {}
        for token in ranked[:4]:
            for proposal_id in reversed(self._postings.get(token, ())):
                seen.setdefault(proposal_id)
                if len(seen) >= MAX_CANDIDATES:
                    return list(seen)
        return list(seen)

    def _embedding(self, entry: Entry) -> MemoryVerdict | None:
        if self._embed is None or not self._vectors or entry.text is None:
            return None
        vectors = self._embed([entry.hypothesis])
        if not vectors:
            return None  # the embedder is down: lexical similarity alone
        best, best_score = None, 0.0
        for proposal_id, vector in self._vectors.items():
            other = self._entries[proposal_id].text
            if other is None or not compatible(entry.text, other):
                continue
            score = _cosine(vectors[0], vector)
            if score > best_score:
                best, best_score = proposal_id, score
        if best is not None and best_score >= self.config.embedding_threshold:
            return self._verdict("embedding", best, best_score, f"means the same (cosine {best_score:.2f})")
        return None

    def _verdict(self, kind: str, earlier: str, score: float, why: str) -> MemoryVerdict:
        reason = f"{why} as {earlier} ({self.describe(earlier)!r})"
        return MemoryVerdict(kind, earlier, round(score, 4), reason, earlier)

    # ----- remembering -------------------------------------------------------------------
    def remember(self, entry: Entry, proposal_id: str) -> None:
        self._entries[proposal_id] = entry
        self._exact.setdefault(entry.key, proposal_id)
        if entry.structure is not None:
            self._structure.setdefault(entry.structure, proposal_id)
        if entry.param is not None:
            bisect.insort(self._values[entry.param[0]], (entry.param[1], proposal_id))
        if entry.text is not None:
            for token in entry.text.tokens:
                self._postings[token].append(proposal_id)
            if self._embed is not None:
                vectors = self._embed([entry.hypothesis])
                if vectors:
                    self._vectors[proposal_id] = vectors[0]

    def similar(self, text: str, limit: int = 5) -> list[tuple[str, float]]:
        probe = Entry(key="", kind="code", parent_id="", aspect="", hypothesis=text, text=analyze(text),
                      structure=None, param=None)
        scored = []
        for candidate in self._candidates(probe):
            other = self._entries[candidate].text
            if other is not None and probe.text is not None:
                scored.append((candidate, round(similarity(probe.text, other), 4)))
        return sorted(scored, key=lambda item: -item[1])[:limit]

    def describe(self, proposal_id: str) -> str:
        entry = self._entries.get(proposal_id)
        if entry is None:
            return ""
        text = entry.hypothesis if len(entry.hypothesis) <= 120 else entry.hypothesis[:119] + "…"
        return text

    def __len__(self) -> int:
        return len(self._entries)


def _close(a: float, b: float, tolerance: float) -> bool:
    if a == b:
        return True
    if a > 0 and b > 0:
        return abs(math.log(a / b)) <= math.log1p(tolerance)
    return abs(a - b) <= tolerance * max(abs(a), abs(b))


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0
