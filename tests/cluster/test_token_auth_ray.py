"""A campaign on a cluster with Ray's token authentication (tests/cluster/nodes.py, auth=True), as
docs/cluster.md, "Token authentication", tells a user to run one: submitted with the cluster's
token it runs to its end; without it, or with another token, it is refused with a message that
says why and what to do, and leaves nothing behind.

Every process here has a HOME of its own: none reads or writes the real ~/.ray/auth_token.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.ledger import load_events, open_filesystem
from tests.cluster.nodes import PYTHON, RAY, LocalCluster, Worker
from tests.toy import write_config

REPO = Path(__file__).resolve().parents[2]
JOB_S = 400.0  # a backstop for one job to end, on a busy 2-core machine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("token")
    homes = [root / "home-head", root / "home-worker"]
    with LocalCluster(root, [Worker(cpus=2, env={"HOME": str(homes[1])})], auth=True,
                      head_env={"HOME": str(homes[0])}) as running:
        yield running


def _without_token(cluster: LocalCluster, home: Path) -> dict[str, str]:
    """The cluster's environment less its token: what a user who has not set it up has."""
    home.mkdir(parents=True, exist_ok=True)
    env = cluster.env({"HOME": str(home)})
    return {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}


def _submit(env: dict[str, str], cluster: LocalCluster, job_id: str, config: Path) -> subprocess.CompletedProcess[str]:
    # Without RAY_ADDRESS, which `ray job` would take over its --address.
    return subprocess.run(
        [RAY, "job", "submit", "--address", cluster.dashboard_url, "--submission-id", job_id, "--working-dir", ".",
         "--", PYTHON, "-m", "orchestrator.cli", "run", str(config), "--quiet"],
        cwd=REPO, env={k: v for k, v in env.items() if k != "RAY_ADDRESS"}, capture_output=True, text=True,
        timeout=JOB_S, check=False,
    )


def _config(root: Path) -> Path:
    return write_config(root, budget={"max_trials": 5}, integration={"enabled": False},
                        ray={"address": "auto", "max_concurrent": 2})


def test_a_job_submitted_with_the_token_runs_the_campaign(cluster: LocalCluster, tmp_path: Path) -> None:
    config = _config(tmp_path)
    done = _submit(cluster.env({"HOME": str(tmp_path)}), cluster, "with-token", config)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "campaign toy finished" in done.stdout + done.stderr
    campaign = tmp_path / "campaign"
    fs, root = open_filesystem(str(campaign / "ledger"))
    assert any(e.type == "campaign_finished" for e in load_events(fs, root, campaign / "journal.wal"))


def test_a_job_submitted_without_the_token_is_refused(cluster: LocalCluster, tmp_path: Path) -> None:
    refused = _submit(_without_token(cluster, tmp_path / "home"), cluster, "without-token", _config(tmp_path))
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "Authentication required: Unauthorized: Missing authentication token" in said, said[-3000:]
    assert "Token authentication is enabled but no authentication token was found" in said
    assert not (tmp_path / "campaign").exists()


def test_a_driver_with_another_token_is_told_why_and_leaves_no_folder(cluster: LocalCluster, tmp_path: Path) -> None:
    # On the head's machine, ray.address auto: Ray reads ~/.ray/auth_token (here another cluster's).
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("0" * 64)
    ray_tmp = tmp_path / "raytmp"  # the address file `ray start --head` leaves in Ray's default temp folder
    (ray_tmp / "ray").mkdir(parents=True)
    (ray_tmp / "ray" / "ray_current_cluster").write_text(cluster.address)
    env = {k: v for k, v in _without_token(cluster, home).items() if k != "RAY_ADDRESS"}
    refused = subprocess.run([PYTHON, "-m", "orchestrator.cli", "run", str(_config(tmp_path)), "--quiet"],
                             env={**env, "RAY_TMPDIR": str(ray_tmp)}, capture_output=True, text=True, timeout=JOB_S,
                             check=False)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "uses token authentication and refused this process's token" in refused.stderr
    assert f"{home}/.ray/auth_token (present)" in refused.stderr and "ray get-auth-token" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "campaign").exists()
