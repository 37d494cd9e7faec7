"""Online false-discovery control over the stream of a campaign's tests: e-LOND.

Every test of a change (a search child past screening, an integration graft) is numbered t = 1, 2, ...
when it starts, and granted the level

    level_t = gamma_t * (w0 + fdr * R_t),

R_t being the promotions recorded before it started, gamma_t a fixed sequence summing to at most 1.
It promotes when its e-value reaches 1 / level_t (orchestrator/sequential.py). This is e-LOND (Xu and
Ramdas 2024) with an initial share w0 <= fdr. Guarantees, for tests whose e-values have expectation
at most 1 under their null at the time they stop, under ANY dependence between tests (siblings on
shared parent trials, a pooled noise estimate):

- FDR = E[false promotions / max(promotions, 1)] <= fdr;
- if every change is null, P(any promotion in the campaign) <= w0.

Proof sketch: a promoted null test t has e_t >= 1 / level_t, so 1{promoted} / max(R, 1) <= level_t e_t / R
<= gamma_t e_t (w0 + fdr (R - 1)) / R <= gamma_t e_t fdr (R >= R_t + 1 when t is promoted, w0 <= fdr);
summing, FDR <= fdr * sum_t gamma_t E[e_t] <= fdr. With all nulls, the first promotion happens at a
level gamma_t w0, and P(any) <= sum_t gamma_t w0 <= w0.

gamma_t = 1 / (H (1 + t / H)^2) with H the number of tests the budget is expected to hold: it sums
to at most 1 over all t, spends about half the budget on the first H tests and never runs out.
Deterministic: replaying `start` and `finish` in journal order rebuilds the ledger exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.sequential import FDR, W0


def gamma(t: int, horizon: float) -> float:
    """The share of the error budget test number t may use (t >= 1); sums to at most 1 over all t."""
    if t < 1:
        raise ValueError(f"tests are numbered from 1, got {t}")
    return 1.0 / (horizon * (1.0 + t / horizon) ** 2)


def expected_tests(max_trials: int, trials_per_test: float = 25.0) -> float:
    """H: how many tests a trial budget is expected to hold (at least 4)."""
    return max(4.0, max_trials / trials_per_test)


@dataclass
class ELond:
    """The campaign's tests: each one's number, level and outcome, and the promotions so far."""

    fdr: float = FDR
    w0: float = W0
    horizon: float = 16.0
    tests: int = 0
    promotions: int = 0
    levels: dict[int, float] = field(default_factory=dict)  # test -> the level it was granted
    promotions_at_start: dict[int, int] = field(default_factory=dict)  # test -> R_t
    open: set[int] = field(default_factory=set)
    promoted: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 < self.w0 <= self.fdr < 1.0:
            raise ValueError(f"need 0 < w0 ({self.w0}) <= fdr ({self.fdr}) < 1")
        if self.horizon <= 0:
            raise ValueError(f"horizon must be positive, got {self.horizon}")

    def level_for(self, test: int, promotions: int) -> float:
        return gamma(test, self.horizon) * (self.w0 + self.fdr * promotions)

    def start(self) -> tuple[int, float]:
        """A new test begins: its number and its level."""
        self.tests += 1
        level = self.level_for(self.tests, self.promotions)
        self.levels[self.tests] = level
        self.promotions_at_start[self.tests] = self.promotions
        self.open.add(self.tests)
        return self.tests, level

    def resume(self, test: int, level: float) -> None:
        """Replay: test number `test` started with `level` (as journaled)."""
        self.tests = max(self.tests, test)
        self.levels[test] = level
        self.promotions_at_start[test] = self.promotions
        self.open.add(test)

    def finish(self, test: int, *, promoted: bool) -> None:
        """Test number `test` ended."""
        if test not in self.open:
            raise ValueError(f"test {test} is not running")
        self.open.discard(test)
        if promoted:
            self.promotions += 1
            self.promoted.append(test)

    def budget_used(self) -> float:
        """sum of gamma_t over the tests started: at most 1, which is what the guarantees need."""
        return sum(gamma(t, self.horizon) for t in self.levels)
