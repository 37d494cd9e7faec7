"""The memory: every proposal is remembered, and a new one is judged against what came before.

Verdicts (docs/memory.md):
- repeat: the same change where running it would teach nothing: on the same parent, or when
  the change is already in the parent (its node is an ancestor). Rejected, naming the earlier
  proposal.
- revisit: the same change in a new context: on another parent (the incumbent moved), or a
  retry of a change whose trial failed (at most `memory.max_retries` on one parent). Allowed,
  linked to the earlier result.
- sweep-step: the same knob set to another value (a further step, a step back). Allowed, linked
  to the earlier steps of the sweep.
- new: nothing alike; the nearest earlier proposal is still named, for the log.

"The same change", found by the first of:
1. exact: the canonical params delta, or the code change's AST-normalized edit (code.py);
2. claims: the same knobs set to the same values (claims.py); another value is a step;
3. structure: a code change making the same move (targets, places, direction) with the same
   aspect, on the same code when the sources tell;
4. text: hypotheses that say the same in other words, by the lexicon's weighted overlap
   (text.py) or by character n-grams (ngrams.py), never across the gates (other targets,
   places or alternatives, opposite directions) and never when the claims set values apart;
5. embedding: the same, by cosine similarity of embeddings, when a model is configured.

Every level is a lookup in an index, never a scan of the memory, so a check stays within
milliseconds with 100,000 proposals.
"""

from __future__ import annotations

import bisect
import heapq
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from itertools import islice
from typing import Any

import numpy as np

from orchestrator.change import Change, Claim
from orchestrator.config import MemoryConfig
from orchestrator.memory.claims import (
    Reading,
    knob_key,
    knob_name,
    knobs_match,
    params_claims,
    read,
    relate,
    same_value,
)
from orchestrator.memory.code import code_key, touched_code
from orchestrator.memory.lexicon import CONCEPTS
from orchestrator.memory.ngrams import Abbreviations, NgramIndex, features, words
from orchestrator.memory.text import Text, analyze, bonus, conflict, knob_concept, overlap, raised

Embed = Callable[[list[str]], list[list[float]]]

REPEAT, REVISIT, SWEEP_STEP, NEW = "repeat", "revisit", "sweep-step", "new"
# Hypotheses that searchers write from the delta itself say nothing the delta does not.
GENERATED = re.compile(r"^set \S+(?: from \S+)?(?: to \S+)?$")
SAME_MOVE_SCAN = 32  # remembered proposals with the same targets scored per check, newest first
SAME_KNOB_SCAN = 16  # remembered proposals on one knob compared per check, newest first (a sweep's steps)
MAX_CANDIDATES = 120  # other proposals scored per check at most: the newest sharing a rare feature
MAX_VALUE_SCAN = 24  # remembered proposals with one knob's value compared per check at most
MAX_CLAIM_CANDIDATES = 40  # remembered proposals compared by their claims per check at most
SWEEP_LINKS = 8  # earlier steps of a sweep named in a verdict at most
MAX_TEXT_JUDGED = 24  # closest hypotheses whose claims and gates are checked per check, best first
WRITTEN_TOLERANCE = 0.001  # relative difference under which two written values are one
RERUN_WORDS = frozenset(("again", "rerun", "retest", "retry", "repeat", "repeated", "confirm", "confirmation",
                         "reproduce", "check", "same", "seed", "seeds", "another", "run", "once", "more"))
REST_OVERLAP = 0.34  # share of the words around two same claims below which they are about other things


@dataclass(frozen=True)
class MemoryVerdict:
    kind: str  # repeat | revisit | sweep-step | new
    earlier: str | None  # the proposal it repeats or revisits, or the sweep's latest step (None: new)
    score: float  # similarity behind the verdict (1.0 exact); for "new", the best score seen
    reason: str  # what it relates to and why, quoting the earlier proposal; "" when new
    nearest: str | None  # the closest earlier proposal, also when new (for the log)
    level: str = ""  # how the earlier one was found: exact | claims | structure | text | embedding
    sweep: tuple[str, ...] = ()  # sweep-step: the earlier steps on the knob, oldest first
    knob: str = ""  # sweep-step: the knob

    @property
    def duplicate(self) -> bool:
        return self.kind == REPEAT

    @property
    def duplicate_of(self) -> str | None:
        return self.earlier if self.kind == REPEAT else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sweep"] = list(self.sweep)
        return data


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
    structure: tuple[Any, ...] | None  # (aspect, targets, where, direction) of a code change
    touched: frozenset[str] = frozenset()  # "path:function" a code change edits (when sources were given)
    claims: tuple[Claim, ...] = ()  # what it changes, main claim first
    grams: frozenset[str] = frozenset()  # its change part's n-gram features
    rest: frozenset[str] = frozenset()  # the words of its change part outside its claims
    lineage: frozenset[str] = frozenset()  # the parent and its ancestors (a change in one is already in it)
    named: bool = True  # its claims name their knobs for sure: other knobs are another change


def same_change_as(verdict: Mapping[str, Any]) -> str | None:
    """The earlier proposal a verdict (as a dict) says is the same change, if it says so."""
    return verdict.get("earlier") if verdict.get("kind") in (REPEAT, REVISIT) else None


def canonical_params(params: Mapping[str, Any]) -> str:
    delta = {k: _canonical_value(v) for k, v in sorted(params.items())}
    return "params:" + json.dumps(delta, sort_keys=True, default=str)


def _canonical_value(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}")  # 0.1 and 0.1000000001 are the same idea
    return value


@dataclass
class _Memo:
    """What the memory knows of a remembered proposal beyond its entry."""

    entry: Entry
    order: int
    node_id: str | None = None  # the node it made, when accepted
    failed: bool = False  # its trial failed: a retry is a revisit
    earlier: str | None = None  # the proposal it repeats or revisits, as judged when it came


class Memory:
    def __init__(self, config: MemoryConfig | None = None, embed: Embed | None = None,
                 notes: Iterable[str] = ()) -> None:
        self.config = config or MemoryConfig()
        self._embed = embed
        self._notes = tuple(notes)  # the campaign's metric names: words of results, not changes
        self._memos: dict[str, _Memo] = {}
        self._by_node: dict[str, str] = {}  # node id -> the proposal that made it
        self._failures: dict[str, int] = defaultdict(int)  # first try of a change -> failed tries on its parent
        self._exact: dict[str, list[str]] = defaultdict(list)
        self._structure: dict[tuple[Any, ...], list[str]] = defaultdict(list)
        self._knobs: dict[str, list[str]] = defaultdict(list)  # knob key -> proposal ids, oldest first
        self._values: dict[str, list[tuple[float, str]]] = defaultdict(list)  # knob key -> (value, id), sorted
        self._postings: dict[str, list[str]] = defaultdict(list)  # text feature -> proposal ids, oldest first
        self._weights: dict[str, float] = {}  # proposal id -> its hypothesis' total feature weight
        self._moves: dict[frozenset[str], list[str]] = defaultdict(list)  # targets -> proposal ids, oldest first
        self._grams = NgramIndex()
        self.abbreviations = Abbreviations()
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
        lineage: Iterable[str] = (),
    ) -> Entry:
        hypothesis = change.hypothesis.strip()
        generated = change.kind == "params" and (not hypothesis or bool(GENERATED.match(hypothesis)))
        family = frozenset(lineage) | {parent_id}
        reading = read(self.abbreviations.expand(hypothesis), self._notes, knob_concept)
        if change.kind == "code" and change.claim is None:
            reading = self._without_parent_state(reading, family)
        text = None if generated else analyze(reading.change)
        grams = frozenset() if generated else features(reading.change)
        rest = frozenset(words(reading.without(range(len(reading.claims))).change)) if reading.claims else frozenset()
        if change.kind == "params":
            delta = tuple((k, _canonical_value(v)) for k, v in sorted(change.params.items()))
            described = ", ".join(f"{k}={_short(v)}" for k, v in delta)
            return Entry(
                key=key or canonical_params(change.params), kind="params", parent_id=parent_id,
                aspect=change.aspect, hypothesis=hypothesis, summary=described if generated else
                f"{described}: {hypothesis}", text=text, structure=None,
                claims=params_claims(delta, dict(parent_params)), grams=grams, lineage=family,
            )
        assert text is not None
        touched = touched_code(sources) if sources else frozenset()
        structure = None
        if text.targets and text.direction:
            structure = (change.aspect, text.targets, text.where, text.direction)
        claims = (_stated(change.claim),) if change.claim is not None else reading.claims or _moved(text)
        named = change.claim is not None or not reading.claims or reading.named
        return Entry(
            key=key or code_key(change.diff, sources, hypothesis), kind="code", parent_id=parent_id,
            aspect=change.aspect, hypothesis=hypothesis, summary=hypothesis, text=text, structure=structure,
            touched=touched, claims=claims, grams=grams, lineage=family, named=named, rest=rest,
        )

    # ----- judging -----------------------------------------------------------------------
    def check(self, entry: Entry) -> MemoryVerdict:
        same: list[tuple[str, str, float, str]] = []  # (proposal, level, score, why)
        steps: list[str] = []
        judged: set[str] = set()
        for earlier in self._exact.get(entry.key, ()):
            what = "the same params delta" if entry.kind == "params" else (
                "the same edit once comments, formatting and local names are set aside")
            same.append((earlier, "exact", 1.0, what))
            judged.add(earlier)
        for earlier, how in self._by_claims(entry):
            if how == "same" and _other_words(entry.rest, self._memos[earlier].entry.rest):
                continue  # "yolov9e imgsz 1024" / "rtdetr-l imgsz 1024": the same values on other things
            judged.add(earlier)
            if how == "same":
                same.append((earlier, "claims", 1.0, f"the same claim: {_claims(entry.claims)}"))
            elif how == "step":
                steps.append(earlier)
        best: str | None = None
        best_score = 0.0
        if not same:
            hit = self._structural(entry, judged)
            if hit is not None:
                same.append(hit)
        if not same:
            best, best_score, why = self._text(entry, judged, steps)
            if best is not None and why:
                same.append((best, "text", best_score, why))
        if not same:
            hit = self._embedding(entry, judged)
            if hit is not None:
                same.append(hit)
        # The same value as an ancestor set, since moved on by a later ancestor: a step back
        back = [f for f in same if self._context(entry, f[0]) == "in parent" and self._overridden(entry, f[0])]
        steps += [f[0] for f in back]
        # An ancestor's change said again with something of its own ("yolo11l epochs 80" then
        # "yolo11l SGD epochs 80"): the ancestor is its context, the new words its change.
        more = [f for f in same if self._context(entry, f[0]) == "in parent" and f[1] == "claims"
                and _names_more(entry.grams, self._memos[f[0]].entry.grams)]
        same = [f for f in same if f not in back and f not in more]
        if same:
            return self._same(entry, same)
        if steps:
            return self._sweep(entry, steps)
        return MemoryVerdict(NEW, None, round(best_score, 4), "", best)

    def _same(self, entry: Entry, found: list[tuple[str, str, float, str]]) -> MemoryVerdict:
        """Repeat or revisit: the context decides. A repeat in the same context wins over a
        revisit elsewhere; a failed trial on the same parent leaves room for a retry."""
        here = [f for f in found if self._context(entry, f[0]) != "moved"]
        if here:
            in_parent = [f for f in here if self._context(entry, f[0]) == "in parent"]
            if in_parent:
                earlier, level, score, why = in_parent[0]
                return self._verdict(REPEAT, earlier, level, score, f"{why}; it is already in {entry.parent_id}")
            tried = [f for f in here if not self._memos[f[0]].failed]
            if tried:
                earlier, level, score, why = tried[0]
                why = f"{why} on {entry.parent_id}, and it was tried there"
                return self._verdict(REPEAT, earlier, level, score, why)
            earlier, level, score, why = max(here, key=lambda f: self._memos[f[0]].order)
            attempts = self._failures[self._first_try(earlier)]
            if attempts <= self.config.max_retries:
                return self._verdict(REVISIT, earlier, level, score, f"{why}; a retry after its trial failed")
            return self._verdict(REPEAT, earlier, level, score,
                                 f"{why} on {entry.parent_id}; its {attempts} tries there all failed")
        earlier, level, score, why = max(found, key=lambda f: self._memos[f[0]].order)
        other = self._memos[earlier].entry.parent_id
        return self._verdict(REVISIT, earlier, level, score, f"{why}; tried on {other}, now on {entry.parent_id}")

    def _first_try(self, proposal_id: str) -> str:
        """The first try of the change `proposal_id` tried again on the same parent."""
        memo = self._memos[proposal_id]
        for _ in range(len(self._memos)):
            earlier = self._memos.get(memo.earlier or "")
            if earlier is None or earlier.entry.parent_id != memo.entry.parent_id:
                break
            proposal_id, memo = memo.earlier or "", earlier
        return proposal_id

    def _lineage_value(self, lineage: frozenset[str], claim: Claim, after: int = -1) -> tuple[int, Claim] | None:
        """The latest claim on `claim`'s knob made by a node of `lineage` (its order and claim),
        among those remembered after order `after`."""
        latest: tuple[int, Claim] | None = None
        for node_id in lineage:  # a path from the root: short, however large the memory
            memo = self._memos.get(self._by_node.get(node_id, ""))
            if memo is None or memo.order <= after or (latest is not None and memo.order <= latest[0]):
                continue
            mine = next((c for c in memo.entry.claims if knobs_match(c.knob, claim.knob)), None)
            if mine is not None:
                latest = (memo.order, mine)
        return latest

    def _without_parent_state(self, reading: Reading, lineage: frozenset[str]) -> Reading:
        """The reading without what its parent already holds: "head_lr 5e-4 + attention_lr 3e-5"
        on a parent whose head_lr is 5e-4 changes the attention_lr only. When the parent holds
        every claim, the proposal is a re-run of what is there (a repeat), and stays whole."""
        held = []
        for index, claim in enumerate(reading.claims):
            state = self._lineage_value(lineage, claim)
            if state and claim.after is not None and state[1].after is not None and same_value(
                    claim.after, state[1].after, WRITTEN_TOLERANCE):
                held.append(index)
        if not held or len(held) == len(reading.claims):
            return reading
        return reading.without(held)

    def _overridden(self, entry: Entry, earlier: str) -> bool:
        """Whether a later node of the lineage moved a knob the earlier (ancestor) change set."""
        memo = self._memos[earlier]
        return any(self._lineage_value(entry.lineage, claim, after=memo.order) is not None
                   for claim in memo.entry.claims)

    def _context(self, entry: Entry, earlier: str) -> str:
        """Where the earlier proposal stands for this one: in its parent already (its node is
        the parent or an ancestor), on the same parent, or elsewhere (the incumbent moved)."""
        memo = self._memos[earlier]
        if memo.node_id is not None and memo.node_id in entry.lineage:
            return "in parent"
        return "same parent" if memo.entry.parent_id == entry.parent_id else "moved"

    def _sweep(self, entry: Entry, steps: list[str]) -> MemoryVerdict:
        ordered = sorted(set(steps), key=lambda p: self._memos[p].order)
        latest = ordered[-1]
        knob = next((c.knob for c in entry.claims if any(
            knobs_match(c.knob, o.knob) for o in self._memos[latest].entry.claims)), entry.claims[0].knob)
        values = ", ".join(_short(_value_on(self._memos[p].entry.claims, knob)) for p in ordered[-SWEEP_LINKS:])
        mine = _short(_value_on(entry.claims, knob))
        step = max(len(ordered), len(self._knobs.get(knob_key(knob), ()))) + 1  # proposals on the knob so far
        reason = (f"another step on {knob}: {mine} after {values} "
                  f"(step {step}; latest {latest} ({self.describe(latest)!r}))")
        return MemoryVerdict(SWEEP_STEP, latest, 1.0, reason, latest, "claims", tuple(ordered[-SWEEP_LINKS:]), knob)

    def _by_claims(self, entry: Entry) -> Iterator[tuple[str, str]]:
        """Earlier proposals on the knobs this one claims: (id, same | step | other | unknown)."""
        if not entry.claims:
            return
        seen: set[str] = set()
        tolerance = self.config.param_tolerance
        for claim in entry.claims:
            key = knob_key(claim.knob)
            candidates: list[str] = []
            number = _number(claim.after)
            if number is not None:  # the same value first: what can make it a repeat
                values = self._values.get(key, [])
                low, high = _window(number, max(tolerance, 1e-9))
                start = bisect.bisect_left(values, (low, ""))
                candidates += [p for v, p in values[start:start + MAX_VALUE_SCAN] if v <= high]
            candidates += list(islice(reversed(self._knobs.get(key, ())), SAME_KNOB_SCAN))
            for proposal_id in candidates:
                if proposal_id in seen:
                    continue
                if len(seen) >= MAX_CLAIM_CANDIDATES:
                    return
                seen.add(proposal_id)
                other = self._memos[proposal_id].entry
                how = self._relate(entry, other)
                if how in ("same", "step") and self._comparable(entry, other):
                    yield proposal_id, how

    def _relate(self, entry: Entry, other: Entry) -> str:
        """same | step | other | unknown, by the two changes' claims. Values a searcher drew are
        the same within `param_tolerance` (0.0100 and 0.0102); values someone wrote are the same
        only when equal once read (2^16, 65536, 64K), since a fine sweep steps by 2%."""
        tolerance = self.config.param_tolerance
        if entry.kind != "params" or other.kind != "params":
            tolerance = min(tolerance, WRITTEN_TOLERANCE)
        return relate(entry.claims, other.claims, tolerance, entry.named and other.named)[0]

    def _apart(self, entry: Entry, other: Entry) -> bool:
        """The claims set the two apart: another value of one knob, or knobs named apart."""
        how = self._relate(entry, other)
        return how == "step" or (how == "other" and entry.named and other.named)

    def _comparable(self, entry: Entry, other: Entry) -> bool:
        """The same words can still be about other code (other functions edited)."""
        return not (entry.touched and other.touched and not entry.touched & other.touched)

    def _structural(self, entry: Entry, judged: set[str]) -> tuple[str, str, float, str] | None:
        if not self.config.structural or entry.structure is None:
            return None
        for proposal_id in islice(reversed(self._structure.get(entry.structure, ())), SAME_MOVE_SCAN):
            other = self._memos[proposal_id].entry
            if proposal_id in judged or not self._comparable(entry, other):
                continue
            if self._relate(entry, other) in ("other", "step"):
                continue  # the same move on other knobs, or to another value: not the same change
            if entry.text is not None and other.text is not None and conflict(entry.text, other.text):
                continue  # the same knob of another model (n_estimators of a forest, of boosting)
            aspect, targets, where, direction = entry.structure
            place = f" in {', '.join(sorted(where))}" if where else ""
            move = f"{direction} {', '.join(sorted(targets))}{place} ({aspect})"
            return proposal_id, "structure", 1.0, f"the same move: {move}"
        return None

    def _text(self, entry: Entry, judged: set[str], steps: list[str]) -> tuple[str | None, float, str]:
        """The remembered hypothesis that says the same thing (its id, score and why), or the
        closest one with "" for why when none is close enough."""
        if entry.text is None:
            return None, 0.0, ""
        nearest, nearest_score = None, 0.0
        threshold, gram_threshold = self.config.text_threshold, self.config.ngram_threshold
        candidates = [p for group in self._candidates(entry.text) for p in group]
        gram_scores = dict(self._grams.search(entry.grams, exclude=judged)) if entry.grams else {}
        scored = []
        for proposal_id in dict.fromkeys([*candidates, *gram_scores]):
            if proposal_id in judged:
                continue
            other = self._memos[proposal_id].entry
            if other.text is None or (entry.kind == "params" and other.kind == "params"):
                continue  # two deltas were compared as deltas: other values are other experiments
            lexical = raised(overlap(entry.text, other.text), bonus(entry.text, other.text))
            scored.append((max(lexical, gram_scores.get(proposal_id, 0.0)), lexical, proposal_id, other))
        # The closest first, the claims and gates only for the few that can be the answer.
        for score, lexical, proposal_id, other in heapq.nlargest(MAX_TEXT_JUDGED, scored, key=lambda s: s[:2]):
            grams = gram_scores.get(proposal_id, 0.0)
            assert other.text is not None
            if not self._comparable(entry, other):
                continue
            how = self._relate(entry, other)
            if how == "step":
                steps.append(proposal_id)
                continue  # the same knob to another value: words cannot make it the same experiment
            if conflict(entry.text, other.text):
                continue
            if lexical < threshold and grams < gram_threshold:
                if nearest is None:  # the closest, since they come best first
                    nearest, nearest_score = proposal_id, score
                continue
            if how == "other" and ((entry.named and other.named) or not _shared_value(entry.claims, other.claims)):
                continue  # other knobs, named for sure (MATRIX_LR, EMBEDDING_LR) or set to other values
            if lexical >= threshold:
                return proposal_id, score, (
                    f"the hypotheses say the same{self._common_move(entry, proposal_id)} (similarity {lexical:.2f})")
            return proposal_id, score, f"the hypotheses share their wording (n-gram cosine {grams:.2f})"
        return nearest, nearest_score, ""

    def _candidates(self, text: Text) -> Iterator[list[str]]:
        """Proposals that can reach the threshold, in two groups. First those with the same
        targets (a bonus lifts them), newest first. Then the newest sharing one of the rarest
        features: a weighted Jaccard of at least t needs a share of at least t of the weight, so
        it shares a feature among the rarest ones that hold more than 1 - t of it (prefix
        filtering), and a total weight within [tW, W/t]."""
        if not text.features:
            return
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

    def _embedding(self, entry: Entry, judged: set[str]) -> tuple[str, str, float, str] | None:
        if self._embed is None or not self._vector_ids or entry.text is None:
            return None
        vector = self._vector(entry.hypothesis)
        if vector is None:
            return None  # the embedder is down: the lexical levels alone
        scores = self._cosines(vector)
        order = np.argsort(-scores)
        for index in order[: int(np.count_nonzero(scores >= self.config.embedding_threshold))]:
            proposal_id, score = self._vector_ids[int(index)], float(scores[index])
            other = self._memos[proposal_id].entry
            if proposal_id in judged or other.text is None or conflict(entry.text, other.text):
                continue  # other targets or the opposite move: not the same idea however close
            if entry.kind == "params" and other.kind == "params":
                continue
            if self._apart(entry, other):
                continue
            why = f"the hypotheses mean the same{self._common_move(entry, proposal_id)} (cosine {score:.2f})"
            return proposal_id, "embedding", score, why
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
        other = self._memos[earlier].entry.text
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

    def _verdict(self, kind: str, earlier: str, level: str, score: float, why: str) -> MemoryVerdict:
        verb = "repeats" if kind == REPEAT else "revisits"
        reason = f"{verb} {earlier} ({self.describe(earlier)!r}): {why}"
        return MemoryVerdict(kind, earlier, round(score, 4), reason, earlier, level)

    # ----- remembering -------------------------------------------------------------------
    def remember(self, entry: Entry, proposal_id: str, node_id: str | None = None, earlier: str | None = None) -> None:
        """Remember a proposal; `node_id` is the node it made, when it was accepted; `earlier`
        the proposal its verdict named as the same change (same_change_as): a retry counts its
        failed tries so."""
        if proposal_id in self._memos:
            return  # replayed twice: once is enough
        self._memos[proposal_id] = _Memo(entry, len(self._memos), node_id, earlier=earlier)
        if node_id is not None:
            self._by_node[node_id] = proposal_id
        self.abbreviations.learn(entry.hypothesis)
        self._exact[entry.key].append(proposal_id)
        if entry.structure is not None:
            self._structure[entry.structure].append(proposal_id)
        for claim in entry.claims:
            key = knob_key(claim.knob)
            self._knobs[key].append(proposal_id)
            number = _number(claim.after)
            if number is not None:
                bisect.insort(self._values[key], (number, proposal_id))
        self._grams.add(proposal_id, entry.grams)
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

    def failed(self, node_id: str) -> None:
        """The trial of this node failed: the same change on its parent may be tried again."""
        proposal_id = self._by_node.get(node_id)
        if proposal_id is not None and not self._memos[proposal_id].failed:
            self._memos[proposal_id].failed = True
            self._failures[self._first_try(proposal_id)] += 1

    def similar(self, text: str, limit: int = 5) -> list[tuple[str, float]]:
        """The remembered proposals closest to `text` by hypothesis (ids and scores, best first);
        opposite moves on the same targets count too: a proposer should see those."""
        probe = analyze(read(text, self._notes, knob_concept).change)
        scored = []
        for proposal_id in dict.fromkeys(p for group in self._candidates(probe) for p in group):
            other = self._memos[proposal_id].entry.text
            assert other is not None
            score = raised(overlap(probe, other), bonus(probe, other))
            if score > 0:
                scored.append((proposal_id, round(score, 4)))
        return sorted(scored, key=lambda item: -item[1])[:limit]

    def describe(self, proposal_id: str) -> str:
        memo = self._memos.get(proposal_id)
        if memo is None:
            return ""
        text = memo.entry.summary
        return text if len(text) <= 120 else text[:119] + "…"

    def __len__(self) -> int:
        return len(self._memos)


def _names_more(mine: frozenset[str], theirs: frozenset[str]) -> bool:
    """Whether a change part names a word the other does not (words that ask for a re-run aside)."""
    return any(f.startswith("w:") and f not in theirs and f[2:] not in RERUN_WORDS for f in mine)


def _other_words(mine: frozenset[str], theirs: frozenset[str]) -> bool:
    """Whether the words around two changes' claims name other things: each has words of its
    own and they share few (the same values set on another model, another column...)."""
    if not mine or not theirs:
        return False
    return len(mine & theirs) / len(mine | theirs) < REST_OVERLAP


def _stated(claim: Claim) -> Claim:
    """A claim as a proposer stated it, its knob named as the memory names knobs read from words
    ("learning_rate" is lr, "MATRIX_LR" stays matrix_lr)."""
    knob, _ = knob_name(claim.knob.replace(" ", "_"), knob_concept)
    return replace(claim, knob=knob or claim.knob)


def _shared_value(mine: tuple[Claim, ...], theirs: tuple[Claim, ...]) -> bool:
    """Whether some claim of each sets the same value (a knob named two ways, maybe)."""
    return any(a.after is not None and b.after is not None and same_value(a.after, b.after, WRITTEN_TOLERANCE)
               for a in mine for b in theirs)


def _moved(text: Text) -> tuple[Claim, ...]:
    """A claim without values from the words alone, "lower the learning rate": one knob moved one
    way, so that the opposite move is another step of the same sweep."""
    knobs = [c for c in text.targets if CONCEPTS[c][0] == "knob"]
    if len(knobs) == 1 and len(text.targets) == 1 and text.direction in ("up", "down"):
        return (Claim(knobs[0], direction=text.direction),)
    return ()


def _claims(claims: tuple[Claim, ...]) -> str:
    return "; ".join(c.describe() for c in claims)


def _value_on(claims: tuple[Claim, ...], knob: str) -> Any:
    claim = next((c for c in claims if knobs_match(c.knob, knob)), None)
    if claim is None:
        return "?"
    return claim.after if claim.after is not None else claim.direction or "?"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _window(value: float, tolerance: float) -> tuple[float, float]:
    if value > 0:
        return value / (1 + tolerance), value * (1 + tolerance)
    spread = tolerance * abs(value) or tolerance
    return value - spread, value + spread


