"""Campaigns on a real multi-node Ray cluster (a head and two GPU worker nodes on loopback,
tests/cluster/conftest.py), driven as a user would: `python -m orchestrator.cli run` with
RAY_ADDRESS. Trials run on both workers and never on the head; each worker fetches the campaign's
code once into its own scratch folder; trials running side by side on a node get GPUs of their
own; a worker that dies mid-trial loses that trial, which runs again on the other worker.

The test that kills a worker comes last: it restarts the worker, but on a new node id.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from orchestrator import report
from orchestrator.config import load_config
from orchestrator.ledger import load_events, open_filesystem, read_table
from orchestrator.tree import Event, SearchTree
from tests.cluster.conftest import GPU_MODELS, worker_scratch
from tests.cluster.nodes import PYTHON, LocalCluster, Worker
from tests.toy import NO_WALL_LIMIT_S, bonus_diff, extra_diff, gate_at, gated, write_config
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
CLUSTER_DOC = REPO / "docs" / "cluster.md"


def _config(tmp: Path, *, concurrent: int, gpus: float, cpus: float = 1.0, **overrides: Any) -> Path:
    queue = tmp / "changes.yaml"
    queue.write_text(yaml.safe_dump([
        {"id": "better", "aspect": "architecture", "hypothesis": "a larger bonus helps", "diff": bonus_diff("0.2")},
        {"id": "extra", "aspect": "data", "hypothesis": "an extra feature helps", "diff": extra_diff("0.1")},
    ], sort_keys=False))
    settings: dict[str, Any] = {
        "seeds": {"baseline": 4, "max": 6},
        "search": {"proposers": [{"type": "queue", "path": str(queue)}], "max_children": 2},
        "budget": {"max_trials": 8, "max_wall_s": NO_WALL_LIMIT_S},
        "integration": {"enabled": False},
        "ray": {"max_concurrent": concurrent, "gpus_per_trial": gpus, "cpus_per_trial": cpus},
        **overrides,
    }
    return write_config(tmp, **settings)


@contextmanager
def _driver(cluster: LocalCluster, config: Path) -> Iterator[subprocess.Popen[str]]:
    """`arborist run` against the cluster, in a process of its own; its output goes to driver.log."""
    log = (config.parent / "driver.log").open("w")
    proc = subprocess.Popen(
        [PYTHON, "-m", "orchestrator.cli", "run", str(config)], cwd=REPO, env=cluster.env(),
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


def _finished(proc: subprocess.Popen[str], config: Path) -> None:
    """Wait for the driver to end and check that it ended well."""
    wait_for(lambda: proc.poll() is not None, "the campaign to end", seen=lambda: _tail(config))
    assert proc.returncode == 0, f"arborist run exited {proc.returncode}:\n{_tail(config)}"


def _tail(config: Path) -> str:
    return (config.parent / "driver.log").read_text()[-3000:]


def _events(config: Path, kind: str) -> list[dict[str, Any]]:
    campaign_dir = config.parent / "campaign"
    fs, root = open_filesystem(str(campaign_dir / "ledger"))
    events: list[Event] = load_events(fs, root, campaign_dir / "journal.wal")
    return [e.data for e in events if e.type == kind]


def _trials(config: Path) -> list[dict[str, Any]]:
    fs, root = open_filesystem(str(config.parent / "campaign" / "ledger"))
    rows: list[dict[str, Any]] = read_table(fs, root, "trials").to_pylist()
    return rows


def _waiting_at(gate: Path, at_least: int = 1) -> list[int]:
    """The trial steps waiting at the gate (`sh -c "while [ ! -e GATE ] ..."`, one per trial); []
    while there are fewer than `at_least`."""
    found: dict[int, int] = {}  # pid -> its parent's
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if len(argv) >= 3 and argv[0].endswith(b"sh") and argv[1] == b"-c" and str(gate).encode() in argv[2]:
            found[int(entry.name)] = parent
    # The loop's `sleep` is forked from the step's shell and carries its command line until it
    # execs: a match whose parent matches too is that fork, not another trial.
    steps = sorted(pid for pid, parent in found.items() if parent not in found)
    return steps if len(steps) >= at_least else []


def _workers_holding(cluster: LocalCluster, pids: list[int]) -> list[int]:
    """The worker node of each of `pids` (by index), in order; a pid of no worker is left out."""
    processes = [set(cluster.processes(i)) for i in range(len(cluster.workers))]
    return [i for pid in pids for i, theirs in enumerate(processes) if pid in theirs]


def test_trials_spread_over_the_workers_with_a_gpu_each_and_one_bundle_per_node(
    gpu_cluster: LocalCluster, tmp_path: Path
) -> None:
    cluster = gpu_cluster
    config = _config(tmp_path, concurrent=4, gpus=1, **gated(tmp_path))
    gate = gate_at(tmp_path)
    with _driver(cluster, config) as proc:
        try:
            # The four baseline trials at once: two per worker, each worker's two GPUs taken.
            waiting = wait_for(lambda: _waiting_at(gate, at_least=4), "four trials at the gate",
                               seen=lambda: _tail(config), alive=lambda: proc.poll() is None)
            held = sorted(_workers_holding(cluster, waiting))
            opened = time.time()
        finally:
            gate.touch()
        _finished(proc, config)
    assert held == [0, 0, 1, 1]

    rows = _trials(config)
    ids = cluster.node_ids()
    workers = {ids["worker0"]: 0, ids["worker1"]: 1}
    assert len(rows) >= 8
    assert {r["ray_node_id"] for r in rows} == set(workers), "trials ran on the head, or on one worker only"
    assert all(r["state"] in ("COMPLETE", "FAIL") for r in rows)
    # Each trial had one GPU; the two that ran side by side on a node had different ones.
    assert all(r["gpu_ids"] in ("0", "1") and r["fp_gpu_count"] == 1 for r in rows)
    side_by_side = [r for r in rows if r["started_at"] < opened]
    assert len(side_by_side) == 4
    for node_id in workers:
        assert sorted(r["gpu_ids"] for r in side_by_side if r["ray_node_id"] == node_id) == ["0", "1"]
    # The fingerprint read each worker's own GPUs (their nvidia-smi), model by node.
    assert {(r["ray_node_id"], r["fp_gpu_model"]) for r in rows} == {
        (node_id, GPU_MODELS[i]) for node_id, i in workers.items()
    }
    assert {r["fp_cuda_version"] for r in rows} == {"12.4"}

    # Each worker fetched the bundle once, into its own scratch folder, however many trials it ran.
    sent = _events(config, "bundle_sent")
    assert sorted(e["placement"]["ray_node_id"] for e in sent) == sorted(workers)
    (bundle_id,) = {e["bundle_id"] for e in sent}
    for i in workers.values():
        scratch = worker_scratch(cluster, i)
        assert (scratch / "repos" / f"{bundle_id}.git").is_dir()
        assert (scratch / "bundles" / f"{bundle_id}.bundle").stat().st_size == sent[0]["bytes"]
    assert not (tmp_path / "campaign" / "scratch" / "repos").exists(), "a worker used ray.scratch_dir"

    # The report's Placement section: a row per worker with its trials and its one fetch.
    loaded = load_config(config)
    tree: SearchTree = report.load_tree(loaded)
    placed = {row["node"]: row for row in report.summary(loaded, tree)["placement"]["nodes"]}
    assert set(placed) == set(workers)
    for node_id, row in placed.items():
        assert (row["bundles"], row["run"]) == (1, sum(r["ray_node_id"] == node_id for r in rows))
    notebook = report.notebook(loaded, tree)
    assert "| bundles |" in notebook


def test_fractional_gpus_give_each_trial_one_gpu_id(gpu_cluster: LocalCluster, tmp_path: Path) -> None:
    # Half a GPU and half a CPU each: a worker could run four, two to a GPU. The baseline alone
    # (two trials) is enough to see what a trial is given.
    config = _config(tmp_path, concurrent=2, gpus=0.5, cpus=0.5, seeds={"baseline": 2, "max": 4},
                     budget={"max_trials": 2, "max_wall_s": NO_WALL_LIMIT_S})
    with _driver(gpu_cluster, config) as proc:
        _finished(proc, config)
    rows = _trials(config)
    assert len(rows) == 2
    assert all(r["gpu_ids"] in ("0", "1") and r["fp_gpu_count"] == 1 for r in rows), [r["gpu_ids"] for r in rows]
    assert {r["fp_gpu_model"] for r in rows} <= set(GPU_MODELS)
    assert {r["ray_node_id"] for r in rows} <= {gpu_cluster.node_ids()["worker0"], gpu_cluster.node_ids()["worker1"]}


def test_a_worker_node_that_dies_loses_its_trial_which_runs_again_on_the_other(
    gpu_cluster: LocalCluster, tmp_path: Path
) -> None:
    cluster = gpu_cluster
    gate = gate_at(tmp_path)
    gate.parent.mkdir(parents=True, exist_ok=True)
    # Only the change's trials wait at the gate: the baseline runs through, and the trial that is
    # lost is one the change's decision counts on.
    wait = (f"if grep -q 'BONUS = 0.2' model.py; then while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.05; "
            "done; fi; exec python train.py")
    config = _config(
        tmp_path, concurrent=2, gpus=1, seeds={"baseline": 3, "max": 4},
        entrypoint={"train": f"sh -c {shlex.quote(wait)}", "evaluate": "python evaluate.py", "budget_s": 300,
                    "evaluate_budget_s": 30},
        sandbox={"read_only": [str(gate.parent)]},
        budget={"max_trials": 6, "max_wall_s": NO_WALL_LIMIT_S},
    )
    ids = cluster.node_ids()
    with _driver(cluster, config) as proc:
        try:
            victim = wait_for(lambda: _workers_holding(cluster, _waiting_at(gate)), "a change's trial at the gate",
                              seen=lambda: _tail(config), alive=lambda: proc.poll() is None)[0]
            assert cluster.kill_worker(victim) > 0
            wait_for(lambda: _events(config, "trial_lost"), "the killed node's trial recorded lost",
                     seen=lambda: _tail(config), alive=lambda: proc.poll() is None)
        finally:
            gate.touch()
        _finished(proc, config)

    dead, survivor = ids[f"worker{victim}"], ids[f"worker{1 - victim}"]
    lost = _events(config, "trial_lost")
    # A trial placed on the dead node before Ray noticed its death may be lost before it said
    # where it ran; every loss that says where names the dead node.
    where = [e["placement"]["ray_node_id"] for e in lost if e.get("placement")]
    assert where and set(where) == {dead}, lost
    assert all(e["reason"] == "worker lost" for e in lost)
    loaded = load_config(config)
    tree = report.load_tree(loaded)
    for event in lost:
        record = tree.trials[event["trial_id"]]
        assert record.result is not None and record.attempts >= 2
        # Run again on the surviving worker, and it counts as a result of the change, not a failure.
        assert record.result.placement.ray_node_id == survivor
        assert record.result.state.value == "COMPLETE", record.result.message
    changed = {tree.trials[e["trial_id"]].node_id for e in lost}
    assert all(tree.nodes[n].status.value != "FAILED" for n in changed)
    assert not [r for r in tree.finished_trials() if r.result and r.result.state.value == "FAIL"]
    placed = {row["node"]: row for row in report.summary(loaded, tree)["placement"]["nodes"]}
    assert placed[dead]["lost"] == len(where)
    assert placed[survivor]["retried"] == len({e["trial_id"] for e in lost})

    # The worker comes back as a new node, and the cluster is whole again.
    assert cluster.start_worker(victim) not in (dead, "")


def test_the_documented_commands_are_the_ones_the_tests_run(tmp_path: Path) -> None:
    """docs/cluster.md shows users how to start such a cluster: the same flags as LocalCluster's."""
    section = CLUSTER_DOC.read_text().split("### Trying a multi-node cluster on one machine", 1)[1]
    block = section.split("```", 2)[1].replace("\\\n", " ")
    commands = [line.split("ray start", 1)[1].split() for line in block.splitlines() if "ray start" in line]
    assert len(commands) == 3, block
    cluster = LocalCluster(tmp_path, [Worker(cpus=2, gpus=2), Worker(cpus=2, gpus=2)])
    try:
        for name, documented in zip(("head", "worker0", "worker1"), commands, strict=True):
            argv = cluster.ray_start_argv(name)
            ours = [a for a in argv[2:] if a.startswith("--") and a != "--disable-usage-stats"]
            theirs = [a for a in documented if a.startswith("--")]
            assert sorted(ours) == sorted(theirs), name
            for flag in ("--num-cpus", "--num-gpus"):
                assert documented[documented.index(flag) + 1] == argv[argv.index(flag) + 1], (name, flag)
    finally:
        cluster.stop()
