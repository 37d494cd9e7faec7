"""Params proposers: each proposal changes exactly one hyperparameter of the parent.

The parameter to change rotates through the space (from a seeded offset); the new value comes
from a value source: random, a grid, or a Tune search algorithm (one per parameter, so its
model is fit on results of changing that parameter alone).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from orchestrator.change import Change, params_claim
from orchestrator.config import ParamConfig
from orchestrator.proposers.base import FINISHED, NOTHING, Answer, Outcome, ProposalContext, Proposer

GRID_POINTS = 5  # per numeric parameter: enough to bracket an optimum, few enough to finish


class ValueSource(Protocol):
    def suggest(self, param: str, source_id: str) -> Any | None: ...

    def observe(self, param: str, source_id: str, value: Any, gain: float | None) -> None: ...


class Suggester(Protocol):
    """The part of a Ray Tune Searcher a value source uses (duck-typed: no Ray import here)."""

    def suggest(self, trial_id: str) -> dict[str, Any] | None: ...

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None: ...


SuggesterFactory = Callable[[str, dict[str, Any], int], Suggester]


def _coerce(spec: ParamConfig, value: Any) -> Any:
    if spec.type == "int":
        return round(float(value))
    if spec.type == "float":
        return float(value)
    return value


class RandomSource:
    def __init__(self, space: dict[str, ParamConfig], seed: int) -> None:
        self._space = space
        self._rng = np.random.default_rng(seed)

    def suggest(self, param: str, source_id: str) -> Any:
        spec = self._space[param]
        if spec.type == "choice":
            assert spec.values is not None
            return spec.values[int(self._rng.integers(len(spec.values)))]
        assert spec.low is not None and spec.high is not None
        if spec.log:
            raw = math.exp(self._rng.uniform(math.log(spec.low), math.log(spec.high)))
        else:
            raw = self._rng.uniform(spec.low, spec.high)
        return _coerce(spec, raw)

    def observe(self, param: str, source_id: str, value: Any, gain: float | None) -> None:
        """Random search does not learn."""


class GridSource:
    def __init__(self, space: dict[str, ParamConfig]) -> None:
        self._grids = {name: grid_values(spec) for name, spec in space.items()}
        self._next = dict.fromkeys(space, 0)

    def suggest(self, param: str, source_id: str) -> Any | None:
        grid = self._grids[param]
        if self._next[param] >= len(grid):
            return None
        self._next[param] += 1
        return grid[self._next[param] - 1]

    def observe(self, param: str, source_id: str, value: Any, gain: float | None) -> None:
        """A grid does not learn."""


def grid_values(spec: ParamConfig) -> list[Any]:
    if spec.type == "choice":
        return list(spec.values or [])
    assert spec.low is not None and spec.high is not None
    if spec.log:
        points = np.geomspace(spec.low, spec.high, GRID_POINTS)
    else:
        points = np.linspace(spec.low, spec.high, GRID_POINTS)
    values = [_coerce(spec, float(p)) for p in points]
    return list(dict.fromkeys(values))  # int grids can collapse


class SearcherSource:
    """One Tune search algorithm per parameter; the score it learns is the paired gain."""

    def __init__(self, space: dict[str, ParamConfig], seed: int, factory: SuggesterFactory) -> None:
        self._space = space
        self._seed = seed
        self._factory = factory
        self._searchers: dict[str, Suggester] = {}

    def _searcher(self, param: str) -> Suggester:
        if param not in self._searchers:
            spec = self._space[param].model_dump(mode="json")
            self._searchers[param] = self._factory(param, spec, self._seed + len(self._searchers))
        return self._searchers[param]

    def suggest(self, param: str, source_id: str) -> Any | None:
        config = self._searcher(param).suggest(source_id)
        if not config or param not in config:
            return None
        return _coerce(self._space[param], config[param])

    def observe(self, param: str, source_id: str, value: Any, gain: float | None) -> None:
        searcher = self._searcher(param)
        if gain is None or not math.isfinite(gain):
            searcher.on_trial_complete(source_id, None, error=True)
        else:
            searcher.on_trial_complete(source_id, {"gain": gain})


class ParamsProposer(Proposer):
    def __init__(
        self,
        name: str,
        space: dict[str, ParamConfig],
        source: ValueSource,
        *,
        seed: int,
        max_proposals: int | None = None,
    ) -> None:
        self.name = name
        self._space = space
        self._names = sorted(space)
        self._offset = seed % len(self._names) if self._names else 0
        self._source = source
        self._count = 0
        self._max = max_proposals
        self._dry: set[str] = set()  # parameters whose source has nothing more

    def propose(self, context: ProposalContext) -> Answer:
        for _ in range(len(self._names)):
            if self._finished():
                return FINISHED
            param = self._names[(self._count + self._offset) % len(self._names)]
            source_id = f"{self.name}-{self._count}"
            self._count += 1
            if param in self._dry:
                continue
            value = self._source.suggest(param, source_id)
            if value is None:
                self._dry.add(param)
                continue
            old = context.parent_params.get(param)
            if value == old:
                self._source.observe(param, source_id, value, None)
                continue
            return Change(
                kind="params",
                aspect=param,
                hypothesis=f"set {param} from {_fmt(old)} to {_fmt(value)}",
                proposer=self.name,
                params={param: value},
                source_id=source_id,
                claim=params_claim({param: value}, context.parent_params),
            )
        # Each parameter had its turn and none gave a value new to this parent.
        return FINISHED if self._finished() else NOTHING

    def observe(self, change: Change, outcome: Outcome) -> None:
        (param, value), = change.params.items()
        self._source.observe(param, change.source_id, value, outcome.gain)

    def _finished(self) -> bool:
        # Both only grow: once finished, always finished.
        if not self._names or len(self._dry) == len(self._names):
            return True
        return self._max is not None and self._count >= self._max

    def restore(self, change: Change) -> None:
        # Advance as the original run did, so a resumed campaign proposes the same sequence.
        # The count goes past the change's own number too: rounds the original run skipped (a
        # value equal to the parent's) are not in the journal, and a new proposal must not take
        # the id of a restored one (its searcher trial would be overwritten).
        (param, _value), = change.params.items()
        number = change.source_id.removeprefix(f"{self.name}-")
        self._count = max(self._count + 1, int(number) + 1 if number.isdigit() else 0)
        self._source.suggest(param, change.source_id)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
