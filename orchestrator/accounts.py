"""The campaign's accounts: its pooled noise and its stream of tests, fed by decisions in order.

Two things every later decision depends on are built from earlier ones: the noise yardstick
(orchestrator/noise.py) and the error budget each new test draws its level from
(orchestrator/fdr.py). Both are rebuilt from the ledger by replaying test starts and decisions in
journal order, so a resumed campaign grants exactly the levels it would have granted.
"""

from __future__ import annotations

from typing import Any

from orchestrator import policy
from orchestrator.config import CampaignConfig
from orchestrator.fdr import ELond, expected_tests
from orchestrator.noise import NoiseModel
from orchestrator.tree import ROOT_ID, Node, NodeStatus, SearchTree


class Accounts:
    def __init__(self, config: CampaignConfig) -> None:
        self.config = config
        stats = config.stats
        self.noise = NoiseModel()
        self.tests = ELond(
            fdr=stats.fdr, w0=stats.initial_wealth,
            horizon=stats.tests_expected or expected_tests(config.budget.max_trials),
        )

    @classmethod
    def rebuild(cls, config: CampaignConfig, tree: SearchTree) -> Accounts:
        """The accounts as they stood after the tree's last event."""
        accounts = cls(config)
        steps: list[tuple[int, int, Node]] = []
        for node in tree.nodes.values():
            if node.test:
                steps.append((node.test_seq, 0, node))
            if node.status is not NodeStatus.OPEN:
                steps.append((node.decided_seq, 1, node))
        for _, kind, node in sorted(steps, key=lambda step: (step[0], step[1])):
            if kind == 0:
                accounts.tests.resume(node.test, node.level)
            else:
                accounts.decided(tree, node, node.status, (node.decision or {}).get("evidence") or {})
        return accounts

    def start_test(self, tree: SearchTree, node: Node) -> dict[str, Any]:
        """A node's test begins: the `test_started` event's data (its number, its level, and the
        noise pool frozen as it stands, so what is decided meanwhile does not move its yardstick)."""
        test, level = self.tests.start()
        pool = self.noise.pooled(policy.noise_cohort(tree, node, self.config))
        return {"node_id": node.node_id, "test": test, "level": level, "pool": list(pool) if pool else None}

    def decided(self, tree: SearchTree, node: Node, status: NodeStatus, evidence: dict[str, Any]) -> None:
        """A decision feeds the noise pool, and ends the node's test."""
        cohort = policy.noise_cohort(tree, node, self.config)
        # Implausible differences (a faked metric) would distort the noise every later test relies
        # on, and count as no promotion, even once a person approves the node.
        suspect = "suspect" in evidence
        if node.node_id == ROOT_ID and status is NodeStatus.BASELINE:
            values = list(tree.completed_values(ROOT_ID, self.config.objective).values())
            self.noise.add_replicates(cohort, ROOT_ID, values)
        elif status in (NodeStatus.PROMOTED, NodeStatus.PRUNED) and evidence.get("diffs") and not suspect:
            self.noise.add_differences(cohort, node.node_id, evidence["diffs"])
        if node.test and node.test in self.tests.open:
            self.tests.finish(node.test, promoted=status is NodeStatus.PROMOTED and not suspect)
