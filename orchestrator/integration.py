"""Integration: graft the winning branches together and keep a graft only if it still helps.

The branch winners (promoted nodes with no promoted descendant) are taken in order of their
estimated gain. The best is the starting combination; each next winner's chain of changes is
grafted onto the current combination as one child, evaluated with the same paired statistics,
and kept only when it beats the combination it was grafted on. A graft whose params disagree
with the combination, or whose diffs do not apply, is a conflict and is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.change import Change
from orchestrator.config import CampaignConfig
from orchestrator.policy import estimate_vs_root
from orchestrator.tree import ROOT_ID, Node, NodeStatus, SearchTree

PROPOSER = "integration"


def branch_winners(tree: SearchTree, config: CampaignConfig) -> list[str]:
    promoted = [n for n in tree.nodes.values() if n.status is NodeStatus.PROMOTED and n.origin == "search"]
    winners = [
        n for n in promoted
        if not any(tree.nodes[c].status is NodeStatus.PROMOTED for c in _descendants(tree, n))
    ]
    ranked = sorted(winners, key=lambda n: (-estimate_vs_root(tree, n.node_id, config), int(n.node_id[1:])))
    return [n.node_id for n in ranked]


def _descendants(tree: SearchTree, node: Node) -> list[str]:
    out, stack = [], list(node.children)
    while stack:
        nid = stack.pop()
        out.append(nid)
        stack.extend(tree.nodes[nid].children)
    return out


@dataclass(frozen=True)
class Graft:
    winner_id: str
    change: Change | None  # None: a conflict, see reason
    reason: str


def plan_graft(tree: SearchTree, combination: Node, winner_id: str) -> Graft:
    """The single change that adds a winner's chain to the combination, or a conflict."""
    winner = tree.nodes[winner_id]
    own = [tree.nodes[nid] for nid in winner.chain if nid not in combination.chain]
    if not own:
        return Graft(winner_id, None, f"{winner_id} is already part of the combination")
    params: dict[str, Any] = {}
    diffs = []
    for node in own:
        assert node.change is not None
        params.update(node.change.params)
        if node.change.kind == "code":
            diffs.append(node.change.diff)
    clashes = [
        f"{name}: combination has {combination.params.get(name)!r}, {winner_id} wants {value!r}"
        for name, value in params.items()
        if combination.params.get(name) != tree.root.params.get(name)
        and combination.params.get(name) != value
    ]
    if clashes:
        return Graft(winner_id, None, "params conflict: " + "; ".join(clashes))
    names = ", ".join(f"{n.node_id} ({n.change.describe()})" for n in own if n.change)
    change = Change(
        kind="code" if diffs else "params",
        aspect="integration",
        hypothesis=f"graft {winner_id}'s chain onto {combination.node_id}: {names}",
        proposer=PROPOSER,
        params=params,
        diff="".join(diffs),
        source_id=winner_id,
    )
    return Graft(winner_id, change, "")


def current_combination(tree: SearchTree, winners: list[str]) -> str:
    """The last kept graft, or the best single branch."""
    kept = [n.node_id for n in tree.nodes.values() if n.origin == "integration" and n.status is NodeStatus.PROMOTED]
    if kept:
        return kept[-1]
    return winners[0] if winners else ROOT_ID


def grafts_tried(tree: SearchTree) -> int:
    return sum(1 for p in tree.proposals if p.change.proposer == PROPOSER)
