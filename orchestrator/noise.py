"""The campaign's noise: the spread of one paired difference, pooled over comparable nodes.

Every test reads its yardstick here: sigma_d, the standard deviation of a child-minus-parent
difference on one seed within one block. Pure and deterministic: rebuilt from the ledger by
replaying decisions in journal order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

MIN_DIFF_DF = 8  # below this many pooled-difference dof, the nodes' replicates also inform sigma_d


@dataclass
class _Pool:
    ss: dict[str, float] = field(default_factory=dict)  # node -> sum of squared deviations from its mean
    dof: dict[str, int] = field(default_factory=dict)  # node -> n - 1
    total_ss: float = 0.0
    total_dof: int = 0
    # The exact sum of `ss` as non-overlapping floats: a node's entry is added and taken out
    # exactly, so `total_ss`, the correctly rounded sum, is the same whatever the order of
    # updates (a replay and the live campaign agree to the bit), at a cost that does not grow
    # with the number of nodes.
    _partials: list[float] = field(default_factory=list)

    def put(self, node: str, values: Sequence[float]) -> None:
        old = self.ss.pop(node, None)
        if old is not None:
            self._partials = _exact_add(self._partials, -old)
            self.total_dof -= self.dof.pop(node)
        if len(values) >= 2:
            self.ss[node] = _sum_sq_dev(values)
            self.dof[node] = len(values) - 1
            self._partials = _exact_add(self._partials, self.ss[node])
            self.total_dof += self.dof[node]
        self.total_ss = math.fsum(self._partials)


def _exact_add(partials: list[float], x: float) -> list[float]:
    """`partials` + x, kept exact (Shewchuk's non-overlapping partial sums, as math.fsum uses)."""
    out = []
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        high = x + y
        low = y - (high - x)
        if low:
            out.append(low)
        x = high
    out.append(x)
    return out


def _sum_sq_dev(values: Sequence[float]) -> float:
    mean = math.fsum(values) / len(values)
    return math.fsum((v - mean) ** 2 for v in values)


class NoiseModel:
    """Pooled estimate of sigma_d, the sd of one paired difference (child minus parent on one seed).

    Per cohort (a string naming trials whose noise is assumed alike, e.g. one objective under one
    fingerprint) two pools are kept, by node, so that adding a node again replaces its earlier entry:

    - replicates: a node's values over its seeds; their spread estimates the per-trial variance s_r^2.
      A paired difference has variance 2 s_r^2 (1 - rho) <= 2 s_r^2 when seed effects correlate
      positively (rho >= 0), so 2 s_r^2 is a conservative stand-in before differences exist.
    - differences: a child's paired differences; their spread around the child's own mean estimates
      sigma_d^2 directly (pooled: sums of squares over the sum of n - 1).

    `sigma_d` uses the differences alone once they carry `min_diff_df` degrees of freedom; before that it
    pools them with the conservative stand-in. Deterministic: the same data give the same estimate.
    """

    def __init__(self, min_diff_df: int = MIN_DIFF_DF) -> None:
        self.min_diff_df = min_diff_df
        self._replicates: dict[str, _Pool] = {}
        self._differences: dict[str, _Pool] = {}

    def add_replicates(self, cohort: str, node: str, values: Sequence[float]) -> None:
        """A node's values over its seeds (within-node spread); replaces that node's earlier entry."""
        self._replicates.setdefault(cohort, _Pool()).put(node, [float(v) for v in values])

    def add_differences(self, cohort: str, node: str, diffs: Sequence[float]) -> None:
        """A decided child's paired differences with its parent; replaces that node's earlier entry."""
        self._differences.setdefault(cohort, _Pool()).put(node, [float(v) for v in diffs])

    def pooled(self, cohort: str, pending: Sequence[float] = ()) -> tuple[float, float] | None:
        """(sum of squares, degrees of freedom) of the pooled paired noise, or None while nothing is known.

        The differences alone once they carry `min_diff_df` degrees of freedom; before that, pooled with
        the conservative stand-in 2 s_r^2 per replicate degree of freedom. `pending`: an open child's own
        differences, pooled in too (as in a pooled-variance t statistic).
        """
        rep = self._replicates.get(cohort)
        dif = self._differences.get(cohort)
        ss_d = dif.total_ss if dif else 0.0
        df_d = dif.total_dof if dif else 0
        if len(pending) >= 2:
            ss_d += _sum_sq_dev([float(v) for v in pending])
            df_d += len(pending) - 1
        df_r = rep.total_dof if rep else 0
        if df_d >= self.min_diff_df or (df_d > 0 and df_r == 0):
            return ss_d, float(df_d)
        if rep and df_r:
            return 2.0 * rep.total_ss + ss_d, float(df_r + df_d)
        return None

    def sigma_d(self, cohort: str, pending: Sequence[float] = ()) -> tuple[float, float] | None:
        """(estimate of sigma_d, its degrees of freedom), or None while nothing is known."""
        pool = self.pooled(cohort, pending)
        return None if pool is None else (math.sqrt(pool[0] / pool[1]), pool[1])
