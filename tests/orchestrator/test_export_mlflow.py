"""`arborist export --mlflow`: a real toy campaign (real trials, no Ray) exported to real MLflow
tracking stores, read back with MlflowClient and held against the ledger's own tables."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from orchestrator import report
from orchestrator.campaign import prepare
from orchestrator.config import CampaignConfig, load_config
from orchestrator.export_mlflow import ExportError, export
from orchestrator.ledger import open_filesystem, read_table
from orchestrator.search import SearchService
from orchestrator.tree import NodeStatus
from tests.orchestrator.test_search import drive
from tests.toy import write_config

CLI = [sys.executable, "-m", "orchestrator.cli"]
MAX_TRIALS = 16


def _config(tmp: Path) -> CampaignConfig:
    return load_config(write_config(tmp, budget={"max_trials": MAX_TRIALS}, integration={"enabled": False}))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CampaignConfig]:
    """A finished toy campaign: promoted, pruned, failed and undecided nodes, progress reports."""
    config = _config(tmp_path_factory.mktemp("export"))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    drive(service)
    service.close()
    yield config


def _campaign_dir(config: CampaignConfig) -> Path:
    assert config.campaign_dir is not None
    return Path(config.campaign_dir)


def _runs(uri: str, experiment: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Trial runs by trial id and node runs by node id, every run of the experiment counted."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id], run_view_type=ViewType.ALL, max_results=5000)
    trials = [r for r in runs if "arborist.trial" in r.data.tags]
    nodes = [r for r in runs if "arborist.trial" not in r.data.tags]
    by_trial = {r.data.tags["arborist.trial"]: r for r in trials}
    by_node = {r.data.tags["arborist.node"]: r for r in nodes}
    assert len(by_trial) == len(trials) and len(by_node) == len(nodes), "a trial or node was exported twice"
    return by_trial, by_node


def _ledger(config: CampaignConfig) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    fs, root = open_filesystem(str(_campaign_dir(config) / "ledger"))
    nodes = {row["node_id"]: row for row in read_table(fs, root, "nodes").to_pylist()}
    return read_table(fs, root, "trials").to_pylist(), nodes


def _export_cli(config: CampaignConfig, uri: str) -> str:
    done = subprocess.run([*CLI, "export", str(_campaign_dir(config)), "--mlflow", uri],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_trial_is_a_run_with_the_ledgers_values_and_a_second_export_adds_none(
    finished: CampaignConfig, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = _export_cli(finished, uri)
    rows, nodes = _ledger(finished)
    assert f"{len(rows)} trial runs added, 0 updated, 0 unchanged" in first
    trials, node_runs = _runs(uri, finished.name)
    assert sorted(trials) == sorted(row["trial_id"] for row in rows)
    assert set(node_runs) == {row["node_id"] for row in rows}
    client = MlflowClient(uri)
    states = {row["state"] for row in rows}
    assert {"COMPLETE", "FAIL"} <= states, f"the toy campaign should hold a failed trial: {states}"
    for row in rows:
        run = trials[row["trial_id"]]
        node = nodes[row["node_id"]]
        params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in json.loads(node["params"]).items()}
        assert run.data.params == {**params, "seed": str(row["seed"])}
        assert run.data.metrics.get("score") == dict(row["metrics"]).get("score")
        for name, value in row["metrics"]:
            assert run.data.metrics[name] == value
        for report_row in json.loads(row["reports"]):  # the progress series, step by step
            history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "partial")}
            assert history[report_row["step"]] == pytest.approx(report_row["partial"])
        tags = run.data.tags
        assert (tags["arborist.node"], tags["arborist.trial"], tags["arborist.campaign"]) == (
            row["node_id"], row["trial_id"], finished.name)
        assert tags["arborist.decision.status"] == node["status"]
        assert tags["arborist.state"] == row["state"]
        assert tags["arborist.fingerprint"] == row["fingerprint_key"]
        assert tags["arborist.placement"].startswith(row["hostname"] or row["worker"])
        assert tags["mlflow.parentRunId"] == node_runs[row["node_id"]].info.run_id
        assert run.info.start_time == round(row["started_at"] * 1000)
        assert run.info.end_time == round(row["finished_at"] * 1000)
        assert run.info.status == {"COMPLETE": "FINISHED", "FAIL": "FAILED"}[row["state"]]
        if row["state"] == "FAIL":
            assert row["message"][:100] in tags["arborist.failure"]
    # A node's run carries its decision: its gain and interval as the ledger holds them.
    decided = [n for n in nodes.values() if n["gain"] is not None and n["node_id"] in node_runs]
    assert decided
    for node in decided:
        run = node_runs[node["node_id"]]
        assert run.data.metrics["arborist.gain"] == pytest.approx(node["gain"])
        assert run.data.tags["arborist.decision.interval"] == f"[{node['gain_ci_low']:.6g}, {node['gain_ci_high']:.6g}]"
        assert run.data.tags["arborist.change.kind"] == node["change_kind"]
        assert run.info.status == ("FAILED" if node["status"] == "FAILED" else "FINISHED")
    crowned = [nid for nid, run in node_runs.items() if run.data.tags["arborist.incumbent"] == "true"]
    assert crowned == [report.load_tree(finished).incumbent_id]

    second = _export_cli(finished, uri)
    assert f"0 trial runs added, 0 updated, {len(rows)} unchanged; 0 node runs added, 0 updated" in second
    again, again_nodes = _runs(uri, finished.name)
    assert sorted(again) == sorted(trials) and sorted(again_nodes) == sorted(node_runs)


def test_an_export_midway_is_completed_by_the_next(tmp_path: Path) -> None:
    config = _config(tmp_path)
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    drive(service, stop_after=7)  # the baseline's seeds and the first children's
    midway = export(_campaign_dir(config), uri)
    tree = report.load_tree(config)
    assert midway.trials_created == len(tree.finished_trials()) == 7
    trials, nodes = _runs(uri, config.name)
    still_open = {nid for nid, run in nodes.items() if run.info.status == "RUNNING"}
    assert still_open and all(tree.nodes[nid].status is NodeStatus.OPEN for nid in still_open)
    assert all(nodes[nid].data.tags["arborist.decision.status"] == "OPEN" for nid in still_open)

    drive(service)
    service.close()
    final = export(_campaign_dir(config), uri)
    tree = report.load_tree(config)
    trials, nodes = _runs(uri, config.name)
    assert sorted(trials) == sorted(r.trial_id for r in tree.finished_trials())
    assert final.trials_created == len(trials) - 7
    # The open nodes were decided since: their runs and their trials' runs say how.
    for nid in still_open:
        status = tree.nodes[nid].status.value
        assert status != "OPEN" and nodes[nid].data.tags["arborist.decision.status"] == status
        assert nodes[nid].info.status in ("FINISHED", "FAILED") and nodes[nid].info.end_time
        for trial in (r for r in trials.values() if r.data.tags["arborist.node"] == nid):
            assert trial.data.tags["arborist.decision.status"] == status
    assert final.trials_updated > 0 and final.nodes_updated >= len(still_open)
    # The crown is on the final incumbent's run alone, wherever it was at the first export.
    assert [nid for nid, run in nodes.items() if run.data.tags["arborist.incumbent"] == "true"] == [tree.incumbent_id]


def test_a_folder_store_is_written_when_mlflow_is_told_to_allow_it(
    finished: CampaignConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(ExportError, match="MLFLOW_ALLOW_FILE_STORE=true"):
        export(_campaign_dir(finished), uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    done = export(_campaign_dir(finished), uri, experiment="toy-folder")
    rows, _ = _ledger(finished)
    assert done.trials_created == len(rows)
    assert export(_campaign_dir(finished), uri, experiment="toy-folder").trials_unchanged == len(rows)
    trials, _ = _runs(uri, "toy-folder")
    assert len(trials) == len(rows)


def test_a_deleted_experiment_is_named_with_what_to_do(finished: CampaignConfig, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.raises(ExportError, match=r"'gone' .* is deleted .*--experiment NAME"):
        export(_campaign_dir(finished), uri, experiment="gone")


def test_without_mlflow_installed_the_error_says_how_to_install_it(finished: CampaignConfig, tmp_path: Path) -> None:
    # mlflow as if not installed: its import fails as it does in an environment without the extra.
    code = (
        "import sys; sys.modules['mlflow'] = None; from orchestrator.cli import main; "
        f"sys.exit(main(['export', {str(_campaign_dir(finished))!r}, '--mlflow', 'sqlite:///{tmp_path}/m.db']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "pip install 'arborist[mlflow]'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "m.db").exists()


def test_a_folder_that_is_not_a_campaign_is_refused_before_any_store_is_made(tmp_path: Path) -> None:
    done = subprocess.run([*CLI, "export", str(tmp_path), "--mlflow", f"sqlite:///{tmp_path}/m.db"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "is not a campaign folder" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "m.db").exists()


def test_a_tracking_server_that_is_not_there_is_named_at_once(finished: CampaignConfig) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ExportError, match=rf"no MLflow tracking server answers at 127.0.0.1:{port} .*mlflow server"):
        export(_campaign_dir(finished), f"http://127.0.0.1:{port}")
    assert time.monotonic() - started < 30, "the export waited on MLflow's retries"
