"""Anti-repetition memory: every proposal is remembered, and one that repeats an earlier idea is
rejected before it costs compute, with a pointer to what it repeats (docs/memory.md).

Levels, in order; the first that matches wins:
1. exact: the canonical params delta, or the code change's AST-normalized edit (memory_code.py);
2. structural: a params value within `param_tolerance` of one tried; a code change making the same
   move (targets, direction, parts of the model) with the same aspect on the same parent;
3. text: hypotheses that say the same thing in other words (memory_text.py);
4. embedding: the same, by cosine similarity of embeddings, when a model is configured.

Every level is a lookup in an index (a dict, an inverted index over the hypotheses' words), never
a scan of the whole memory, so a check stays in the milliseconds with 100,000 proposals.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any

import numpy as np

from orchestrator.change import Change
from orchestrator.config import MemoryConfig
from orchestrator.memory_code import code_key, touched_code
from orchestrator.memory_text import Text, analyze, bonus, conflict, overlap, raised, similarity

Embed = Callable[[list[str]], list[list[float]]]

# Hypotheses that searchers write from the delta itself say nothing the delta does not.
GENERATED = re.compile(r"^set \S+(?: from \S+)?(?: to \S+)?$")
SAME_MOVE_SCAN = 32  # remembered proposals with the same targets scored per check, newest first
MAX_CANDIDATES = 200  # other proposals scored per check at most: the newest sharing a rare feature
MAX_PARAM_SCAN = 64  # remembered values of one parameter compared per check at most


@dataclass(frozen=True)
class MemoryVerdict:
    kind: str  # new | exact | structural | text | embedding
    duplicate_of: str | None  # the earlier proposal it repeats (None when new)
    score: float  # similarity behind the verdict (1.0 exact); for "new", the best score seen
    reason: str  # what it repeats and why, quoting the earlier proposal; "" when new
    nearest: str | None  # the closest earlier proposal, also when new (for the log)

    @property
    def duplicate(self) -> bool:
        return self.kind != "new"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Entry:
    """A proposal in the form the memory compares, built once."""

    key: str  # exact canonical key (JSON-safe)
    kind: str  # params | code
    parent_id: str
    aspect: str
    hypothesis: str
    summary: str  # how the memory quotes it: the hypothesis, or the delta when that says more
    text: Text | None  # None: a generated hypothesis, judged on its delta alone
    structure: tuple[Any, ...] | None  # (parent, aspect, targets, where, direction) of a code change
    touched: frozenset[str] = frozenset()  # "path:function" a code change edits (when sources were given)
    params: tuple[tuple[str, Any], ...] = ()  # a params change's canonical delta
    moves: tuple[str, ...] = ()  # a params change's direction per parameter (up, down, set)


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
        self._embed = embed
        self._entries: dict[str, Entry] = {}
        self._exact: dict[str, str] = {}
        self._structure: dict[tuple[Any, ...], list[str]] = defaultdict(list)
        self._values: dict[str, list[tuple[float, str]]] = defaultdict(list)  # one numeric parameter, sorted
        self._deltas: dict[tuple[str, ...], list[str]] = defaultdict(list)  # other deltas by parameter names
        self._postings: dict[str, list[str]] = defaultdict(list)  # text feature -> proposal ids, oldest first
        self._weights: dict[str, float] = {}  # proposal id -> its hypothesis' total feature weight
        self._moves: dict[frozenset[str], list[str]] = defaultdict(list)  # targets -> proposal ids, oldest first
        self._vector_ids: list[str] = []
        self._vectors: list[list[float]] = []
        self._matrix = np.zeros((0, 0), dtype=np.float32)  # the vectors, normalized, built as needed
        self._vector_cache: dict[str, list[float]] = {}

    # ----- building entries ---------------------------------------------------------------
    def entry(
        self,
        change: Change,
        parent_id: str,
        parent_params: Mapping[str, Any],
        sources: Mapping[str, tuple[str, str]] | None = None,
        key: str | None = None,
    ) -> Entry:
        hypothesis = change.hypothesis.strip()
        generated = change.kind == "params" and (not hypothesis or bool(GENERATED.match(hypothesis)))
        text = None if generated else analyze(hypothesis)
        if change.kind == "params":
            delta = tuple((k, _canonical_value(v)) for k, v in sorted(change.params.items()))
            described = ", ".join(f"{k}={_short(v)}" for k, v in delta)
            return Entry(
                key=key or canonical_params(change.params), kind="params", parent_id=parent_id,
                aspect=change.aspect, hypothesis=hypothesis, summary=described if generated else
                f"{described}: {hypothesis}", text=text, structure=None, params=delta,
                moves=tuple(_move(parent_params.get(k), v) for k, v in delta),
            )
        assert text is not None
        touched = touched_code(sources) if sources else frozenset()
        structure = None
        if text.targets and text.direction:
            structure = (parent_id, change.aspect, text.targets, text.where, text.direction)
        return Entry(
            key=key or code_key(change.diff, sources, hypothesis), kind="code", parent_id=parent_id,
            aspect=change.aspect, hypothesis=hypothesis, summary=hypothesis, text=text, structure=structure,
            touched=touched,
        )

    # ----- judging -----------------------------------------------------------------------
    def check(self, entry: Entry) -> MemoryVerdict:
        earlier = self._exact.get(entry.key)
        if earlier is not None:
            what = "the same params delta" if entry.kind == "params" else (
                "the same edit once comments, formatting and local names are set aside")
            return self._verdict("exact", earlier, 1.0, what)
        if self.config.structural:
            hit = self._structural(entry)
            if hit is not None:
                return hit
        best, best_score = self._text(entry)
        if best is not None and best_score >= self.config.text_threshold:
            why = f"the hypotheses say the same{self._common_move(entry, best)} (similarity {best_score:.2f})"
            return self._verdict("text", best, best_score, why)
        hit = self._embedding(entry)
        if hit is not None:
            return hit
        return MemoryVerdict("new", None, round(best_score, 4), "", best)

    def _structural(self, entry: Entry) -> MemoryVerdict | None:
        if entry.kind == "params":
            return self._close_params(entry)
        if entry.structure is None:
            return None
        for proposal_id in self._structure.get(entry.structure, ()):
            other = self._entries[proposal_id]
            if entry.touched and other.touched and not entry.touched & other.touched:
                continue  # the same words about other code
            if entry.text is not None and other.text is not None and conflict(entry.text, other.text):
                continue  # the same knob of another model (n_estimators of a forest, of boosting)
            _, aspect, targets, where, direction = entry.structure
            place = f" in {', '.join(sorted(where))}" if where else ""
            move = f"{direction} {', '.join(sorted(targets))}{place} ({aspect})"
            return self._verdict("structural", proposal_id, 1.0, f"the same move on {entry.parent_id}: {move}")
        return None

    def _close_params(self, entry: Entry) -> MemoryVerdict | None:
        tolerance = self.config.param_tolerance
        if tolerance <= 0 or not entry.params:
            return None
        if len(entry.params) == 1 and _numeric(entry.params[0][1]):
            name, value = entry.params[0]
            values = self._values.get(name, [])
            low, high = _window(float(value), tolerance)
            start = bisect.bisect_left(values, (low, ""))
            for other, proposal_id in values[start:start + MAX_PARAM_SCAN]:
                if other > high:
                    break
                if _close(float(value), other, tolerance):
                    move = f" ({entry.moves[0]} from the parent's)" if entry.moves and entry.moves[0] != "set" else ""
                    why = f"{name}={_short(value)}{move} is within {tolerance:.0%} of {name}={_short(other)}"
                    return self._verdict("structural", proposal_id, 1.0, why)
            return None
        names = tuple(k for k, _ in entry.params)
        for proposal_id in reversed(self._deltas.get(names, [])[-MAX_PARAM_SCAN:]):
            delta = self._entries[proposal_id].params
            if all(_same_value(a, b, tolerance) for (_, a), (_, b) in zip(entry.params, delta, strict=True)):
                return self._verdict("structural", proposal_id, 1.0, f"every value within {tolerance:.0%}")
        return None

    def _text(self, entry: Entry) -> tuple[str | None, float]:
        """The closest remembered hypothesis that could say the same thing, and its score."""
        if entry.text is None or not entry.text.features:
            return None, 0.0
        best, best_score = None, 0.0
        for group in self._candidates(entry.text):
            for proposal_id in group:
                other = self._entries[proposal_id]
                if other.text is None or (entry.kind == "params" and other.kind == "params"):
                    continue  # two deltas were compared as deltas: other values are other experiments
                score = similarity(entry.text, other.text, at_least=best_score)
                if score > best_score:
                    best, best_score = proposal_id, score
            if best_score >= self.config.text_threshold:
                break  # a duplicate among those making the same move: no need to look further
        return best, best_score

    def _candidates(self, text: Text) -> Iterator[list[str]]:
        """Proposals that can reach the threshold, in two groups. First those with the same
        targets (a bonus lifts them), newest first. Then the newest sharing one of the rarest
        features: a weighted Jaccard of at least t needs a share of at least t of the weight, so
        it shares a feature among the rarest ones that hold more than 1 - t of it (prefix
        filtering), and a total weight within [tW, W/t]."""
        threshold = min(max(self.config.text_threshold, 1e-3), 1.0)
        same: list[str] = []
        if text.targets:
            same = list(islice(reversed(self._moves.get(text.targets, ())), SAME_MOVE_SCAN))
            yield same
        present = sorted((len(self._postings[f]), f, w) for f, w in text.features.items() if f in self._postings)
        gathered: set[str] = set()
        covered, needed = 0.0, (1.0 - threshold) * text.weight
        for _, feature, weight in present:
            gathered.update(islice(reversed(self._postings[feature]), MAX_CANDIDATES - len(gathered)))
            covered += weight
            if covered > needed or len(gathered) >= MAX_CANDIDATES:
                break
        low, high = threshold * text.weight, text.weight / threshold
        weights = self._weights
        yield [p for p in gathered.difference(same) if low <= weights[p] <= high]

    def _embedding(self, entry: Entry) -> MemoryVerdict | None:
        if self._embed is None or not self._vector_ids or entry.text is None:
            return None
        vector = self._vector(entry.hypothesis)
        if vector is None:
            return None  # the embedder is down: the lexical levels alone
        scores = self._cosines(vector)
        order = np.argsort(-scores)
        for index in order[: int(np.count_nonzero(scores >= self.config.embedding_threshold))]:
            proposal_id, score = self._vector_ids[int(index)], float(scores[index])
            other = self._entries[proposal_id]
            if other.text is None or conflict(entry.text, other.text):
                continue  # other targets or the opposite move: not the same idea however close
            if entry.kind == "params" and other.kind == "params":
                continue
            why = f"the hypotheses mean the same{self._common_move(entry, proposal_id)} (cosine {score:.2f})"
            return self._verdict("embedding", proposal_id, score, why)
        return None

    def _cosines(self, vector: list[float]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Cosine similarity of `vector` with every remembered one (one matrix product)."""
        if self._matrix.shape[0] < len(self._vectors):
            fresh = np.asarray(self._vectors[self._matrix.shape[0]:], dtype=np.float32)
            norms = np.linalg.norm(fresh, axis=1, keepdims=True)
            fresh = (fresh / np.where(norms > 0, norms, 1.0)).astype(np.float32)
            self._matrix = fresh if self._matrix.size == 0 else np.vstack((self._matrix, fresh))
        query = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(query))
        if norm == 0 or self._matrix.shape[1] != query.shape[0]:
            return np.zeros(self._matrix.shape[0], dtype=np.float32)
        return self._matrix @ (query / norm)

    def _common_move(self, entry: Entry, earlier: str) -> str:
        other = self._entries[earlier].text
        if entry.text is None or other is None or not entry.text.targets or entry.text.targets != other.targets:
            return ""
        direction = entry.text.direction if entry.text.direction == other.direction else ""
        return f": {' '.join(filter(None, (direction, ', '.join(sorted(entry.text.targets)))))}"

    def _vector(self, hypothesis: str) -> list[float] | None:
        if hypothesis not in self._vector_cache:
            assert self._embed is not None
            vectors = self._embed([hypothesis])
            if not vectors:
                return None
            self._vector_cache[hypothesis] = vectors[0]
        return self._vector_cache[hypothesis]

    def _verdict(self, kind: str, earlier: str, score: float, why: str) -> MemoryVerdict:
        reason = f"repeats {earlier} ({self.describe(earlier)!r}): {why}"
        return MemoryVerdict(kind, earlier, round(score, 4), reason, earlier)

    # ----- remembering -------------------------------------------------------------------
    def remember(self, entry: Entry, proposal_id: str) -> None:
        if proposal_id in self._entries:
            return  # replayed twice: once is enough
        self._entries[proposal_id] = entry
        self._exact.setdefault(entry.key, proposal_id)
        if entry.structure is not None:
            self._structure[entry.structure].append(proposal_id)
        if entry.kind == "params" and entry.params:
            if len(entry.params) == 1 and _numeric(entry.params[0][1]):
                name, value = entry.params[0]
                bisect.insort(self._values[name], (float(value), proposal_id))
            else:
                self._deltas[tuple(k for k, _ in entry.params)].append(proposal_id)
        if entry.text is not None:
            for feature in entry.text.features:
                self._postings[feature].append(proposal_id)
            self._weights[proposal_id] = entry.text.weight
            if entry.text.targets:
                self._moves[entry.text.targets].append(proposal_id)
            if self._embed is not None:
                vector = self._vector(entry.hypothesis)
                if vector is not None:
                    self._vector_ids.append(proposal_id)
                    self._vectors.append(vector)

    def similar(self, text: str, limit: int = 5) -> list[tuple[str, float]]:
        """The remembered proposals closest to `text` by hypothesis (ids and scores, best first);
        opposite moves on the same targets count too: a proposer should see those."""
        probe = analyze(text)
        scored = []
        for proposal_id in (p for group in self._candidates(probe) for p in group):
            other = self._entries[proposal_id].text
            assert other is not None
            score = raised(overlap(probe, other), bonus(probe, other))
            if score > 0:
                scored.append((proposal_id, round(score, 4)))
        return sorted(scored, key=lambda item: -item[1])[:limit]

    def describe(self, proposal_id: str) -> str:
        entry = self._entries.get(proposal_id)
        if entry is None:
            return ""
        text = entry.summary
        return text if len(text) <= 120 else text[:119] + "…"

    def __len__(self) -> int:
        return len(self._entries)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _move(before: Any, after: Any) -> str:
    if _numeric(before) and _numeric(after) and before != after:
        return "up" if after > before else "down"
    return "set"


def _window(value: float, tolerance: float) -> tuple[float, float]:
    if value > 0:
        return value / (1 + tolerance), value * (1 + tolerance)
    spread = tolerance * abs(value)
    return value - spread, value + spread


def _close(a: float, b: float, tolerance: float) -> bool:
    """Within `tolerance` relative; on a log scale for positive values (0.0100 and 0.0102 at 5%)."""
    if a == b:
        return True
    if a > 0 and b > 0:
        return abs(math.log(a / b)) <= math.log1p(tolerance)
    return abs(a - b) <= tolerance * max(abs(a), abs(b))


def _same_value(a: Any, b: Any, tolerance: float) -> bool:
    if _numeric(a) and _numeric(b):
        return _close(float(a), float(b), tolerance)
    return bool(a == b)

