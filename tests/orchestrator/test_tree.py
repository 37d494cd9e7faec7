"""Tree invariants and replay: replaying the journal rebuilds exactly the same state."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.change import Change
from orchestrator.tree import ROOT_ID, Event, NodeStatus, SearchTree, trial_id_for
from trials.spec import TrialResult, TrialState

OPS = st.lists(st.tuples(st.sampled_from(["child", "seeds", "start", "finish", "lost", "decide"]),
                         st.integers(0, 50), st.integers(0, 4)), max_size=60)


def _state(tree: SearchTree) -> tuple:  # type: ignore[type-arg]
    return (tree.nodes, tree.trials, tree.proposals, tree.phase, tree.incumbent_id, tree.last_seq)


def _grow(ops: list[tuple[str, int, int]]) -> tuple[SearchTree, list[Event]]:
    journal: list[Event] = []
    tree = SearchTree(sink=journal.append)
    tree.record(
        "node_created", node_id=ROOT_ID, parent_id=None, change=None, commit="c0", params={"x": 1}, origin="root"
    )
    tree.record("seeds_requested", node_id=ROOT_ID, seeds=[0, 1])
    for op, a, b in ops:
        nodes = list(tree.nodes)
        node_id = nodes[a % len(nodes)]
        trials = list(tree.trials.values())
        if op == "child":
            change = Change(kind="params", aspect="x", hypothesis="h", proposer="t", params={"x": a})
            new_id = tree.next_node_id()
            tree.record("proposal", proposal_id=tree.next_proposal_id(), parent_id=node_id, change=change.to_dict(),
                        verdict="accepted", reason="", node_id=new_id, duplicate_of=None)
            tree.record("node_created", node_id=new_id, parent_id=node_id, change=change.to_dict(), commit=f"c{a}",
                        params={"x": a}, origin="search")
        elif op == "seeds":
            tree.record("seeds_requested", node_id=node_id, seeds=[b, b + 1])
        elif op in ("start", "finish", "lost") and trials:
            record = trials[a % len(trials)]
            if op == "start":
                tree.record("trial_started", trial_id=record.trial_id, node_id=record.node_id, seed=record.seed)
            elif op == "lost":
                tree.record("trial_lost", trial_id=record.trial_id, reason="test")
            else:
                state = [TrialState.COMPLETE, TrialState.FAIL, TrialState.TIMEOUT][b % 3]
                result = TrialResult(record.trial_id, record.node_id, record.seed, state, metrics={"m": float(a)})
                tree.record("trial_finished", result=result.to_dict())
        elif op == "decide":
            status = [NodeStatus.PROMOTED, NodeStatus.PRUNED, NodeStatus.FAILED][b % 3]
            tree.record("decision", node_id=node_id, status=status.value, reason="r", evidence={"mean": 0.1})
    return tree, journal


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_replay_rebuilds_the_same_state(ops: list[tuple[str, int, int]]) -> None:
    tree, journal = _grow(ops)
    assert _state(SearchTree.replay(journal)) == _state(tree)
    # Replaying twice (a retried write) or out of order changes nothing.
    assert _state(SearchTree.replay(journal + journal[::-1])) == _state(tree)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_tree_invariants(ops: list[tuple[str, int, int]]) -> None:
    tree, journal = _grow(ops)
    for node in tree.nodes.values():
        if node.parent_id is not None:
            assert node.parent_id in tree.nodes
            assert node.node_id in tree.nodes[node.parent_id].children
            assert node.chain[:-1] == tree.nodes[node.parent_id].chain
        for seed in node.seeds:
            assert trial_id_for(node.node_id, seed) in tree.trials
    for record in tree.trials.values():
        if record.result is not None:
            assert record.state is record.result.state  # a finished trial keeps its first result
    running = [r.trial_id for r in tree.trials.values() if r.state is TrialState.RUNNING]
    assert tree.trials_running() == len(running) and [r.trial_id for r in tree.running_trials()] == running
    assert SearchTree.replay(journal).trials_running() == len(running)


def test_a_trial_reported_twice_is_recorded_once() -> None:
    tree, _ = _grow([])
    tid = trial_id_for(ROOT_ID, 0)
    first = TrialResult(tid, ROOT_ID, 0, TrialState.COMPLETE, metrics={"m": 1.0})
    second = TrialResult(tid, ROOT_ID, 0, TrialState.FAIL)
    tree.record("trial_finished", result=first.to_dict())
    tree.record("trial_finished", result=second.to_dict())
    assert tree.trials[tid].result == first
    assert tree.completed_values(ROOT_ID, "m") == {0: 1.0}


def test_elapsed_time_sums_sessions() -> None:
    tree = SearchTree()
    tree.apply(Event(1, 100.0, "session_started", {"ts": 100.0}))
    tree.apply(Event(2, 130.0, "note", {"message": "x"}))
    tree.apply(Event(3, 500.0, "session_started", {"ts": 500.0}))
    tree.apply(Event(4, 510.0, "note", {"message": "y"}))
    assert tree.elapsed_s() == 40.0
    assert tree.elapsed_s(now=520.0) == 50.0


def test_time_between_a_killed_driver_and_its_resume_is_charged_to_no_session() -> None:
    # The driver ran 600 s, was killed with -9, and was resumed 20 minutes later; the resumed
    # session's first events mark the trial the kill cut off as lost.
    journal = [
        Event(1, 1000.0, "session_started", {"ts": 1000.0}),
        Event(2, 1300.0, "note", {"message": "a trial finished"}),
        Event(3, 1600.0, "note", {"message": "the last event before kill -9"}),
        Event(4, 2800.0, "session_started", {"ts": 2800.0, "resumed": True}),
        Event(5, 2800.5, "note", {"message": "a cut-off trial marked lost"}),
        Event(6, 2860.0, "note", {"message": "a trial finished"}),
    ]
    at_resume = SearchTree.replay(journal[:4])
    assert at_resume.elapsed_s() == 600.0  # the resumed session starts from the previous total
    assert at_resume.elapsed_s(now=2800.0) == 600.0
    tree = SearchTree.replay(journal)
    assert tree.elapsed_s() == 660.0
    assert tree.elapsed_s(now=2900.0) == 700.0  # the live session counts from its own start


def test_a_session_never_runs_past_the_next_ones_start() -> None:
    # A clock stepped back between sessions must not make the earlier one overlap the later.
    tree = SearchTree()
    tree.apply(Event(1, 1000.0, "session_started", {"ts": 1000.0}))
    tree.apply(Event(2, 1100.0, "note", {"message": "x"}))
    tree.apply(Event(3, 1050.0, "session_started", {"ts": 1050.0}))
    tree.apply(Event(4, 1070.0, "note", {"message": "y"}))
    assert tree.elapsed_s() == 70.0


def test_pending_trials_run_in_request_order_a_block_together() -> None:
    # Trials are handed out in the order they were requested, a block's trials one after another,
    # so a parent's control runs beside its children and an older request is never starved.
    tree, _ = _grow([])
    for node_id in ("n1", "n2"):
        change = Change(kind="params", aspect="x", hypothesis="h", proposer="t", params={"x": node_id})
        tree.record("node_created", node_id=node_id, parent_id=ROOT_ID, change=change.to_dict(), commit="c",
                    params={}, origin="search")
    tree.record("block_requested", block=1, parent_id=ROOT_ID, node_ids=["n1", "n2"], seed=7,
                order=["n2", "n1", ROOT_ID])
    tree.record("block_requested", block=2, parent_id=ROOT_ID, node_ids=["n1"], seed=8, order=[ROOT_ID, "n1"])
    order = [(r.node_id, r.seed, r.block) for r in tree.pending_trials()]
    baseline = [(ROOT_ID, s, 0) for s in tree.root.seeds if s < 7]
    assert order == [*baseline, ("n2", 7, 1), ("n1", 7, 1), (ROOT_ID, 7, 1), (ROOT_ID, 8, 2), ("n1", 8, 2)]
    assert tree.next_seed(0) == 9


def test_events_are_stamped_by_the_trees_clock() -> None:
    now = [100.0]
    journal: list[Event] = []
    tree = SearchTree(sink=journal.append, clock=lambda: now[0])
    tree.record("session_started", ts=now[0], resumed=False)
    now[0] = 250.0
    tree.record("note", message="later")
    assert [e.ts for e in journal] == [100.0, 250.0]
    assert tree.elapsed_s() == 150.0


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_the_counts_kept_as_events_apply_match_a_count_over_every_node_and_trial(
    ops: list[tuple[str, int, int]],
) -> None:
    tree, _ = _grow(ops)
    nodes, trials = list(tree.nodes.values()), list(tree.trials.values())
    assert tree.open_nodes() == [n for n in nodes if n.status is NodeStatus.OPEN]
    assert {n.node_id for n in tree.expandable_nodes()} == {n.node_id for n in nodes if n.status.expandable}
    assert tree.trials_spent() == sum(1 for r in trials if r.state is not TrialState.PENDING)
    waiting = [r for r in trials if r.state is TrialState.PENDING
               and (tree.nodes[r.node_id].status is NodeStatus.OPEN or tree.nodes[r.node_id].status.expandable)]
    assert tree.pending_trials() == sorted(waiting, key=lambda r: (r.requested_seq, r.position))
    states: dict[str, int] = {}
    for record in trials:
        states[record.state.value] = states.get(record.state.value, 0) + 1
    statuses: dict[str, int] = {}
    for node in nodes:
        statuses[node.status.value] = statuses.get(node.status.value, 0) + 1
    assert tree.counts() == {"trials": states, "nodes": statuses}
    assert list(tree.decided) == [n.node_id for n in sorted(nodes, key=lambda n: n.decided_seq)
                                  if n.status is not NodeStatus.OPEN]
