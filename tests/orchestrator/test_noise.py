"""The noise pool's totals: the same whatever the order nodes came and went in."""

from __future__ import annotations

import math
import random

from orchestrator.noise import NoiseModel


def _entries(rng: random.Random, n: int) -> dict[str, list[float]]:
    # Magnitudes over 16 decades, so that a sum in the wrong order would round differently.
    return {f"n{i}": [rng.gauss(0, 1) * 10 ** rng.randint(-8, 8) for _ in range(rng.randint(1, 6))] for i in range(n)}


def test_the_pool_is_the_exact_sum_whatever_the_order_of_updates() -> None:
    rng = random.Random(7)
    final = _entries(rng, 2000)
    live = NoiseModel()
    order = list(final)
    rng.shuffle(order)
    for node in order:  # first entries, then half of them replaced, as a re-decided node does
        live.add_differences("c", node, [rng.gauss(0, 1) for _ in range(3)])
    for node in order[:1000]:
        live.add_differences("c", node, final[node])
    for node in order[1000:]:
        live.add_differences("c", node, final[node])
    replayed = NoiseModel()
    for node in sorted(final):
        replayed.add_differences("c", node, final[node])

    pooled = replayed.pooled("c")
    assert pooled is not None and live.pooled("c") == pooled  # to the bit
    ss = math.fsum(math.fsum((v - math.fsum(vs) / len(vs)) ** 2 for v in vs) for vs in final.values() if len(vs) >= 2)
    dof = sum(len(vs) - 1 for vs in final.values() if len(vs) >= 2)
    assert pooled == (ss, float(dof))


def test_a_node_put_again_with_one_value_leaves_the_pool() -> None:
    model = NoiseModel(min_diff_df=1)
    model.add_differences("c", "n1", [0.1, 0.3, 0.2])
    model.add_differences("c", "n2", [1.0, 2.0])
    model.add_differences("c", "n1", [0.5])
    assert model.pooled("c") == (0.5, 1.0)
