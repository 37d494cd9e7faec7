"""`ray job submit` of a campaign to a real multi-node cluster (a head with the job server and two
worker nodes on loopback, tests/cluster/nodes.py), as docs/cluster.md tells a user to: the job
is stopped mid-run with `ray job stop`, and a second job resumes the campaign to its end. And a
driver whose token authentication differs from the cluster's is refused before it starts anything.

Trials wait on a gate file, so "trials are running when the job stops" is arranged, not hoped for.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.tree import Event
from tests.cluster.nodes import PYTHON, RAY, LocalCluster, Worker
from tests.toy import gate_at, gated, write_config
from tests.waiting import events_so_far, wait_for

REPO = Path(__file__).resolve().parents[2]
JOB_S = 400.0  # a backstop for one job to end, on a busy 2-core machine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A head (the job server and the drivers, no trials) and two worker nodes, without token auth."""
    with LocalCluster(tmp_path_factory.mktemp("jobs"), [Worker(cpus=2), Worker(cpus=2)]) as running:
        yield running


def _of(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e.type == kind]


def _job(cluster: LocalCluster, *args: str, timeout: float = JOB_S) -> subprocess.CompletedProcess[str]:
    """`ray job ARGS` against the cluster's job server, from the repository root. Without
    RAY_ADDRESS, which `ray job` would take over its --address."""
    env = {k: v for k, v in cluster.env().items() if k != "RAY_ADDRESS"}
    return subprocess.run([RAY, "job", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _submit(cluster: LocalCluster, job_id: str, *command: str, wait: bool) -> subprocess.CompletedProcess[str]:
    # `--working-dir .` as docs/cluster.md says: Ray uploads the repository (honouring .gitignore,
    # so not .venv); the cluster's Python has arborist's dependencies, as the image would.
    return _job(cluster, "submit", "--address", cluster.dashboard_url, "--submission-id", job_id,
                "--working-dir", ".", *([] if wait else ["--no-wait"]), "--",
                PYTHON, "-m", "orchestrator.cli", *command, "--quiet")


def test_a_stopped_job_is_resumed_by_another_and_every_trial_runs_once(cluster: LocalCluster, tmp_path: Path) -> None:
    config = write_config(tmp_path, **gated(tmp_path), budget={"max_trials": 10}, integration={"enabled": False},
                          ray={"address": "auto", "max_concurrent": 2})
    campaign = tmp_path / "campaign"
    submitted = _submit(cluster, "toy-1", "run", str(config), wait=False)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    running = wait_for(
        lambda: started if len(started := _of(events_so_far(campaign), "trial_started")) >= 2 else [],
        "two trials running in the first job (held by the gate)",
        seen=lambda: _job(cluster, "status", "--address", cluster.dashboard_url, "toy-1").stdout[-500:],
    )
    stopped = _job(cluster, "stop", "--address", cluster.dashboard_url, "toy-1")
    assert stopped.returncode == 0 and "was stopped" in stopped.stdout, stopped.stdout[-3000:]
    logs = _job(cluster, "logs", "--address", cluster.dashboard_url, "toy-1").stdout
    assert f"arborist resume {campaign}" in logs, logs[-3000:]  # said before Ray's grace period ran out
    assert not _of(events_so_far(campaign), "trial_finished")  # stopped while every trial it started ran

    gate_at(tmp_path).touch()
    resumed = _submit(cluster, "toy-2", "resume", str(campaign), wait=True)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    events = events_so_far(campaign)
    assert len(_of(events, "campaign_finished")) == 1
    results = Counter(e.data["result"]["trial_id"] for e in _of(events, "trial_finished"))
    assert results and max(results.values()) == 1, f"a trial recorded twice: {results.most_common(3)}"
    handed_out = {e.data["trial_id"] for e in running}
    assert handed_out <= set(results), "a trial running when the job stopped was lost, not run again"
    assert handed_out <= {e.data["trial_id"] for e in _of(events, "trial_lost")}
    nodes = {e.data["result"]["placement"]["ray_node_id"] for e in _of(events, "trial_finished")}
    workers = {cluster.node_ids()[f"worker{i}"] for i in range(2)}
    assert nodes <= workers, "a trial ran on the head, which has no CPU for trials"
    assert "# Campaign toy" in (campaign / "report.md").read_text()


def test_a_token_file_on_a_cluster_without_token_auth_is_refused_before_anything_starts(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    # ~/.ray/auth_token, as any earlier local Ray leaves it; RAY_AUTH_MODE unset, ray.address auto:
    # Ray turns token authentication on in the driver, and the cluster's processes, which send no
    # token, can no longer reach it (the tree actor died "cancelled before it started").
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("a-token-of-an-earlier-local-ray")
    config = write_config(tmp_path, budget={"max_trials": 5}, integration={"enabled": False},
                          ray={"address": "auto", "max_concurrent": 2})
    # `auto` as on the head's machine: the address file `ray start --head` leaves in Ray's default
    # temp folder (this cluster's nodes keep theirs in folders of their own). RAY_ADDRESS, which a
    # Ray job's driver has, would be an explicit address: Ray looks for a token file only for `auto`.
    ray_tmp = tmp_path / "raytmp"
    (ray_tmp / "ray").mkdir(parents=True)
    (ray_tmp / "ray" / "ray_current_cluster").write_text(cluster.address)
    env = {k: v for k, v in cluster.env({"HOME": str(home), "RAY_TMPDIR": str(ray_tmp)}).items()
           if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    refused = subprocess.run([PYTHON, "-m", "orchestrator.cli", "run", str(config), "--quiet"], env=env,
                             capture_output=True, text=True, timeout=JOB_S, check=False)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "runs without token authentication, but this process uses it" in refused.stderr
    assert f"{home}/.ray/auth_token (present)" in refused.stderr and "RAY_AUTH_MODE=disabled" in refused.stderr
    assert "Traceback" not in refused.stderr and "ActorDiedError" in refused.stderr  # named, not raised
    assert not (tmp_path / "campaign").exists()  # nothing to clear away before the next `run`

    fixed = subprocess.run([PYTHON, "-m", "orchestrator.cli", "run", str(config), "--quiet"],
                           env={**env, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True, timeout=JOB_S,
                           check=False)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    campaign = tmp_path / "campaign"
    assert _of(events_so_far(campaign), "campaign_finished")
    # A folder that holds a campaign is another matter: `run` refuses it, saying each way on.
    again = subprocess.run([PYTHON, "-m", "orchestrator.cli", "run", str(config)],
                           env={**env, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True, timeout=JOB_S,
                           check=False)
    assert again.returncode == 2, again.stderr[-3000:]
    assert f"arborist resume {campaign}" in again.stderr and f"rm -r {campaign}" in again.stderr
