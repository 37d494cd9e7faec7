"""The drift monitor: the controls of every block, read as a control chart.

Each block re-runs its parent (the baseline, later the incumbent) beside the children under test,
so the campaign measures the same configuration again and again as it goes. Those control values,
in dispatch order and per node and fingerprint, are a control chart. When the recent ones have
moved away from the earlier ones by more than the seed noise allows, conditions changed (a machine
warmed up, a data mirror was updated, other jobs took the GPU): a `drift_detected` event is
journaled, and promotions wait until the child under test has a block run after it.

Comparisons stay fair under drift without this (blocks pair trials run together); the monitor is
there so that a person sees the drift, and so that no promotion rests only on blocks from before
a change of conditions.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from orchestrator.config import CampaignConfig
from orchestrator.tree import ROOT_ID, SearchTree
from trials.spec import TrialState


@dataclass(frozen=True)
class ControlPoint:
    node_id: str
    cohort: str  # the fingerprint's comparability key
    order: int  # trials of the campaign finished when it started: the chart's time axis
    started_ts: float
    seed: int
    block: int
    value: float


def control_nodes(tree: SearchTree) -> list[str]:
    """The nodes that served as controls: the baseline, then each block's parent by its first block."""
    if ROOT_ID not in tree.nodes:
        return []
    first_block: dict[str, int] = {}
    for block, row in sorted(tree.blocks.items()):
        first_block.setdefault(str(row["parent_id"]), block)
    first_block.pop(ROOT_ID, None)
    return [ROOT_ID, *sorted(first_block, key=lambda node_id: (first_block[node_id], node_id))]


def node_controls(tree: SearchTree, config: CampaignConfig, node_id: str) -> list[ControlPoint]:
    """One node's completed trials, in dispatch order."""
    points = []
    for record in tree.node_trials(node_id):
        if record.state is not TrialState.COMPLETE or record.result is None:
            continue
        value = record.result.metrics.get(config.objective)
        if value is None:
            continue
        points.append(ControlPoint(
            record.node_id, record.result.fingerprint.comparability_key(), record.started_order,
            record.started_ts, record.seed, record.block, float(value),
        ))  # fmt: skip
    return sorted(points, key=lambda p: p.order)


@dataclass(frozen=True)
class DriftFinding:
    node_id: str
    cohort: str
    reference_mean: float  # the node's first `window` controls since the last detection
    recent_mean: float  # its last `window` controls
    shift: float  # recent minus reference, in metric units
    z: float  # shift in standard errors of the seed noise
    since_order: int  # first control of the reference
    at_order: int  # last control read

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def successive_spread(values: list[float]) -> float:
    """The seed noise of a series from its successive differences (von Neumann): sqrt(sum of
    (x[i+1] - x[i])^2 / (2 (k - 1))). A slow drift barely moves neighbours, so unlike the plain
    standard deviation this does not grow with the drift it is meant to reveal."""
    if len(values) < 2:
        return math.nan
    steps = [(b - a) ** 2 for a, b in itertools.pairwise(values)]
    return math.sqrt(math.fsum(steps) / (2.0 * len(steps)))


def detect(tree: SearchTree, config: CampaignConfig, node_id: str) -> DriftFinding | None:
    """Drift of one node's controls, or None: the mean of its last `stats.drift_window` controls
    against the mean of its first ones since the last detection, in standard errors of the seed
    noise estimated from the same controls (`successive_spread`). Needs 2 x drift_window controls.

    Looked at after every control, a threshold of 4 standard errors keeps false alarms to about
    one campaign in a hundred over a few hundred looks (normal noise; measured in
    tests/orchestrator/test_drift.py).
    """
    w = config.stats.drift_window
    since = max((int(e["at_order"]) for e in tree.drift_events if e["node_id"] == node_id), default=-1)
    by_cohort: dict[str, list[ControlPoint]] = {}
    for point in node_controls(tree, config, node_id):
        if point.order > since:
            by_cohort.setdefault(point.cohort, []).append(point)
    for cohort, points in sorted(by_cohort.items()):
        if len(points) < 2 * w:
            continue
        values = [p.value for p in points]
        spread = successive_spread(values)
        if not spread > 0:
            continue
        ref, recent = sum(values[:w]) / w, sum(values[-w:]) / w
        z = (recent - ref) / (spread * math.sqrt(2.0 / w))
        if abs(z) >= config.stats.drift_z:
            return DriftFinding(node_id, cohort, ref, recent, recent - ref, z, points[0].order, points[-1].order)
    return None
