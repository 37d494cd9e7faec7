"""Blocks: which trials a comparison may pair, and the order a block's trials run in."""

from __future__ import annotations

from orchestrator import blocks
from orchestrator.change import Change
from orchestrator.config import CampaignConfig
from orchestrator.tree import ROOT_ID, SearchTree
from trials.spec import TrialResult, TrialState


def _config(**stats: int) -> CampaignConfig:
    return CampaignConfig.model_validate({
        "name": "t", "project": "/p", "entrypoint": {"train": "x"},
        "metrics": {"acc": {"direction": "max", "role": "objective"}},
        "search": {"proposers": [{"type": "random"}], "max_open_nodes": 1},
        "stats": stats,
    })


def _run(tree: SearchTree, node_id: str, seed: int, value: float) -> None:
    tid = f"{node_id}-s{seed}"
    tree.record("trial_started", trial_id=tid, node_id=node_id, seed=seed)
    tree.record("trial_finished", result=TrialResult(tid, node_id, seed, TrialState.COMPLETE,
                                                     metrics={"acc": value}).to_dict())


def test_the_order_within_a_block_is_a_seeded_shuffle() -> None:
    first = [blocks.order("n0", ["n1", "n2", "n3"], b) for b in range(1, 401)]
    assert first == [blocks.order("n0", ["n1", "n2", "n3"], b) for b in range(1, 401)]  # replayable
    assert all(sorted(o) == ["n0", "n1", "n2", "n3"] for o in first)
    ahead = sum(o.index("n1") < o.index("n0") for o in first)
    assert 160 < ahead < 240  # a child runs before its control about half the time


def test_a_pair_run_too_far_apart_is_left_out_with_the_reason() -> None:
    config = _config(pair_window=3)
    tree = SearchTree()
    tree.record("session_started", ts=0.0)
    tree.record("node_created", node_id=ROOT_ID, parent_id=None, change=None, commit="c", params={}, origin="root")
    change = Change(kind="params", aspect="x", hypothesis="h", proposer="t", params={"x": 1}).to_dict()
    tree.record("node_created", node_id="n1", parent_id=ROOT_ID, change=change, commit="c", params={}, origin="search")
    for block, seed in ((1, 10), (2, 11)):
        tree.record("block_requested", block=block, parent_id=ROOT_ID, node_ids=["n1"], seed=seed,
                    order=[ROOT_ID, "n1"])
    _run(tree, ROOT_ID, 10, 1.0)
    _run(tree, "n1", 10, 1.5)  # together: paired
    _run(tree, ROOT_ID, 11, 1.0)
    tree.record("seeds_requested", node_id=ROOT_ID, seeds=[20, 21, 22])
    for seed in (20, 21, 22):  # other work runs in between
        _run(tree, ROOT_ID, seed, 1.0)
    _run(tree, "n1", 11, 1.7)  # four dispatches after its control: outside the window
    pairs = blocks.paired(tree, tree.nodes["n1"], tree.root, "acc", config)
    assert pairs.seeds == [10] and pairs.child == [1.5] and pairs.blocks == [1]
    assert pairs.excluded == {11: "the two trials started 4 trials apart (window 3)"}
    default = _config()  # one block of every open node, and a round of concurrent trials
    assert blocks.window(default) == 2 * (1 + 1) + 2 * default.ray.max_concurrent
