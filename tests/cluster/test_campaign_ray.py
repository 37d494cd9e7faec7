"""A real campaign on the shared local Ray: tree actor, Tune Searcher bridge, trainable."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import ray

from orchestrator import campaign, report
from orchestrator.config import load_config
from orchestrator.ledger import open_filesystem, read_table
from tests.toy import write_config

pytestmark = pytest.mark.usefixtures("ray_session")


def test_toy_campaign_on_ray(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, search={"proposers": [
        {"type": "queue", "path": str(tmp_path / "hypotheses.yaml")},
        {"type": "bayes", "algorithm": "optuna", "max_proposals": 6},
    ]}))
    ticks: list[dict] = []  # type: ignore[type-arg]
    final = campaign.run(config, setup=campaign.prepare(config, None), on_progress=ticks.append, progress_every_s=0.5)
    assert final["phase"] == "done"
    assert ticks and ticks[-1]["phase"] == "done"
    assert any(t["running"] > 0 for t in ticks), "progress never showed a running trial"
    tree = report.load_tree(config)
    summary = report.summary(config, tree)
    by_source = {d["source_id"]: d for d in summary["decisions"] if d["proposer"] == "queue"}
    assert by_source["better"]["status"] == "PROMOTED"
    assert by_source["worse"]["status"] == "PRUNED"
    assert by_source["breaks"]["status"] == "FAILED"
    bayes = [d for d in summary["decisions"] if d["proposer"] == "bayes"]
    assert bayes, "the Tune search algorithm proposed nothing"
    assert all(d["change"].startswith("params x=") for d in bayes)
    # Trials ran through Tune with arborist's trial ids, and each result is in the ledger once.
    trial_ids = [r.trial_id for r in tree.finished_trials()]
    assert len(trial_ids) == len(set(trial_ids)) == final["trials_spent"] + final["integration_spent"]
    assert (Path(config.campaign_dir or "") / "tune").exists()
    # Every trial in the ledger says it ran on this Ray node, and the notebook names the node.
    (node,) = [n for n in ray.nodes() if n["Alive"]]
    fs, root = open_filesystem(str(Path(config.campaign_dir or "") / "ledger"))
    rows = read_table(fs, root, "trials").to_pylist()
    assert len(rows) == len(trial_ids)
    assert {(r["ray_node_id"], r["node_ip"]) for r in rows} == {(node["NodeID"], node["NodeManagerAddress"])}
    (placed,) = summary["placement"]["nodes"]
    assert (placed["node"], placed["run"], placed["lost"]) == (node["NodeID"], len(rows), 0)
    assert f"| {node['NodeID']} | {node['NodeManagerAddress']} |" in report.notebook(config, tree)
    # A winner can be fetched with plain git.
    incumbent = summary["incumbent"]
    repo = Path(config.campaign_dir or "") / "repo"
    shown = subprocess.run(
        ["git", "-C", str(repo), "show", f"{incumbent['branch']}:.arborist/params.json"],
        check=True, capture_output=True, text=True,
    )
    params = json.loads(shown.stdout)
    assert params == incumbent["params"]


def test_a_second_campaign_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    campaign.prepare(config, None)
    with pytest.raises(Exception, match="already holds a campaign"):
        campaign.prepare(config, None)
