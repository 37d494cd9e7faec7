"""Blocks: a parent and its children run on one fresh seed, together, so their difference is fair.

A paired difference (child minus parent on one seed) cancels the seed's luck, but only the
conditions the two trials shared. A parent trial run long before its child carries every drift
in between: a machine warming up, a cache filling, other jobs on the GPU, a data mirror updated.
So a comparison only uses a block: the parent's control trial and the children's trials on a seed
no trial of the campaign has used, requested together and dispatched one after another (at once
on a cluster). Several children of one parent share a block: one control serves them all. The
order within a block is shuffled, seeded by the block's number, so that neither a steady drift
nor trials dealt to machines in turn puts a child on the same side of its control every time.

A pair is used only when both trials completed under one fingerprint and started at most
`window` trials apart (trials of the campaign finished between their starts): a trial lost and
rerun much later no longer shares its block's
conditions. Old trials still feed the noise model (orchestrator/noise.py), never a difference.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from orchestrator.config import CampaignConfig
from orchestrator.tree import Node, SearchTree
from trials.spec import TrialState


def window(config: CampaignConfig) -> int:
    """Most trials finished between the starts of a pair's two trials: `stats.pair_window`, or enough for one
    block of every open node and a full round of concurrent trials."""
    if config.stats.pair_window:
        return config.stats.pair_window
    return 2 * (config.search.max_open_nodes + 1) + 2 * config.ray.max_concurrent


def order(parent_id: str, children: list[str], block: int) -> list[str]:
    """Dispatch order within a block: a shuffle seeded by the block's number.

    Random, so that neither a steady drift nor a regular placement (trials dealt to machines in
    turn) puts a child on the same side of its control block after block; seeded, so that a
    replayed campaign orders its blocks the same way.
    """
    trials = [parent_id, *children]
    random.Random(block).shuffle(trials)
    return trials


@dataclass(frozen=True)
class Pairs:
    """A child's values and its parent's on the seeds they share in blocks, in seed order."""

    seeds: list[int] = field(default_factory=list)
    child: list[float] = field(default_factory=list)
    parent: list[float] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)
    excluded: dict[int, str] = field(default_factory=dict)  # seed -> why it was not compared

    def differences(self, sign: float) -> list[float]:
        return [sign * (c - p) for c, p in zip(self.child, self.parent, strict=True)]


def paired(
    tree: SearchTree, node: Node, parent: Node, metric: str, config: CampaignConfig, since_seq: int = 0,
    limit: int | None = None,
) -> Pairs:
    """The node's and its parent's values of `metric` on the seeds where both completed within the
    pairing window (or `limit` trials apart) under one fingerprint; with `since_seq`, only trials
    requested after it."""
    limit = window(config) if limit is None else limit
    out = Pairs()
    for seed in sorted(node.seeds):
        mine = tree.trials.get(f"{node.node_id}-s{seed}")
        theirs = tree.trials.get(f"{parent.node_id}-s{seed}")
        if mine is None or theirs is None or mine.requested_seq <= since_seq:
            continue
        if mine.result is None or theirs.result is None:
            continue
        if metric not in mine.result.metrics or metric not in theirs.result.metrics:
            continue
        if mine.result.state is not TrialState.COMPLETE or theirs.result.state is not TrialState.COMPLETE:
            continue
        if mine.result.fingerprint.comparability_key() != theirs.result.fingerprint.comparability_key():
            out.excluded[seed] = "the two trials ran under different fingerprints"
            continue
        apart = abs(mine.started_order - theirs.started_order)
        if apart > limit:
            out.excluded[seed] = f"the two trials started {apart} trials apart (window {limit})"
            continue
        out.seeds.append(seed)
        out.child.append(mine.result.metrics[metric])
        out.parent.append(theirs.result.metrics[metric])
        out.blocks.append(mine.block)
    return out


def paired_differences(
    tree: SearchTree, node: Node, parent: Node, config: CampaignConfig, since_seq: int = 0,
    limit: int | None = None,
) -> tuple[list[float], Pairs]:
    """The node's gains over its parent (positive is better) in its blocks, and the pairs behind them."""
    pairs = paired(tree, node, parent, config.objective, config, since_seq, limit)
    sign = 1.0 if config.metrics[config.objective].direction == "max" else -1.0
    return pairs.differences(sign), pairs


def block_times(tree: SearchTree, node: Node, pairs: Pairs) -> list[dict[str, Any]]:
    """When each block of a comparison ran: what the report shows beside every decision."""
    rows = []
    for seed, block in zip(pairs.seeds, pairs.blocks, strict=True):
        mine = tree.trials[f"{node.node_id}-s{seed}"]
        theirs = tree.trials[f"{node.parent_id}-s{seed}"]
        rows.append({
            "block": block, "seed": seed, "child_started": mine.started_ts, "parent_started": theirs.started_ts,
            "apart": abs(mine.started_order - theirs.started_order),
        })
    return rows


def node_is_settled(tree: SearchTree, node: Node) -> bool:
    """All trials of the node, and of its parent on the same seeds, have finished: its blocks are in."""
    if any(not r.state.is_finished() for r in tree.node_trials(node.node_id)):
        return False
    if node.parent_id is None:
        return True
    parent = tree.nodes[node.parent_id]
    return all(
        tree.trials[t].state.is_finished()
        for t in (f"{parent.node_id}-s{s}" for s in node.seeds)
        if t in tree.trials
    )


def screen_window(config: CampaignConfig) -> int:
    """Most trials between a screening pair's two trials: four pairing windows. Screening only
    chooses what to test (no error budget rides on it), so it may read the parent's recent
    controls instead of paying for new ones; a drift in between can only make it choose worse."""
    return 4 * window(config)


def recent_controls(tree: SearchTree, config: CampaignConfig, node: Node, count: int) -> list[int]:
    """Up to `count` seeds of the parent's most recent completed trials, within the screening
    window of now and not yet run by `node`: a screening child runs on these instead of a block."""
    assert node.parent_id is not None
    seeds: list[int] = []
    for record in sorted(tree.node_trials(node.parent_id), key=lambda r: -r.started_order):
        if len(seeds) >= count or tree.finished_count - record.started_order > screen_window(config):
            break
        if record.state is TrialState.COMPLETE and record.seed not in node.seeds:
            seeds.append(record.seed)
    return seeds


def due(tree: SearchTree, config: CampaignConfig) -> list[tuple[str, dict[str, Any]]]:
    """The trials to request now, as events: for every parent whose open children have all finished
    their current trials, one block they share (`block_requested`); a child still screening runs
    first on its parent's recent controls when there are any (`seeds_requested`, no new control).

    A child waits when its own trials and its parent's trials on its seeds have all finished and
    it is still undecided; a new child has no trials and waits at once.
    """
    waiting: dict[str, list[Node]] = {}
    busy: set[str] = set()
    for node in tree.open_nodes():
        if node.parent_id is None:
            continue
        if node_is_settled(tree, node):
            waiting.setdefault(node.parent_id, []).append(node)
        else:
            busy.add(node.parent_id)
    out: list[tuple[str, dict[str, Any]]] = []
    blocks = 0
    for parent_id, children in waiting.items():
        if parent_id in busy:
            continue
        in_block, reusing = [], False
        for child in children:
            wanted = config.stats.screen_blocks - len(child.seeds) if not child.test and child.origin == "search" else 0
            reused = recent_controls(tree, config, child, wanted) if wanted > 0 else []
            if reused:
                out.append(("seeds_requested", {"node_id": child.node_id, "seeds": reused}))
                reusing = True
            else:
                in_block.append(child.node_id)
        if not in_block or reusing:
            continue  # the others wait for the reusing siblings, then all share the next block
        blocks += 1
        block = len(tree.blocks) + blocks
        out.append(("block_requested", {
            "block": block, "parent_id": parent_id, "node_ids": in_block,
            "seed": tree.next_seed(config.seeds.start) + blocks - 1, "order": order(parent_id, in_block, block),
        }))
    return out
