"""Exporting a campaign to MLflow: every finished trial as a run, nested under a run per node.

The ledger stays the campaign's truth; the export is a copy for people who browse experiments
in MLflow's UI. One parent run per node (its params, its decision, the mean of each metric over
its seeds) holds one child run per trial (the node's params and the seed, the trial's metrics
with the step series of its progress reports, where and under which fingerprint it ran). Nested
runs are how MLflow shows a configuration measured on several seeds: the table lists the nodes,
comparable by their decision and means, and each one unfolds into its seeds.

Exporting again is safe: runs are found by their `arborist.trial` / `arborist.node` tag (and the
campaign's id, so two campaigns sharing an experiment never mix) and brought up to date instead
of created twice. A finished trial never changes, but its node's decision does, and an export
cut short leaves a run half written: both are completed by the next export.

mlflow is an optional extra (`pip install 'arborist[mlflow]'`), imported only here and only when
an export runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import socket
import statistics
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.config import CampaignConfig
from orchestrator.tree import Node, NodeStatus, Phase, SearchTree, TrialRecord
from trials.spec import TrialResult, TrialState

INSTALL_HINT = "pip install 'arborist[mlflow]' (or: pip install mlflow-skinny sqlalchemy alembic)"
TAG_CAMPAIGN = "arborist.campaign"
TAG_CAMPAIGN_ID = "arborist.campaign_id"
TAG_NODE = "arborist.node"
TAG_TRIAL = "arborist.trial"
PARENT_TAG = "mlflow.parentRunId"  # what MLflow's UI nests child runs by
NOTE_TAG = "mlflow.note.content"  # the run's Description in the UI
SERVER_CONNECT_S = 10.0  # a tracking server that does not accept a connection by then is not there
SUMMARY_CHARS = 250  # a tag shown in a table column: a line, not a page
NOTE_CHARS = 5000  # the run's description: room for a hypothesis and a log tail
MAX_TAG_CHARS = 8000  # MLflow's limits (mlflow.utils.validation)
MAX_PARAM_CHARS = 6000
MAX_KEY_CHARS = 250
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
# A trial's state as MLflow's run status: its own failures FAILED, stopped from outside KILLED.
RUN_STATUS = {
    TrialState.COMPLETE: "FINISHED", TrialState.FAIL: "FAILED", TrialState.TIMEOUT: "FAILED",
    TrialState.INVALID: "FAILED", TrialState.PRUNED: "KILLED", TrialState.STOPPED: "KILLED",
}
# A node's decision evidence as metrics, so the UI can sort and chart nodes by their gain.
DECISION_METRICS = {
    "mean": "arborist.gain", "ci_low": "arborist.gain_ci_low", "ci_high": "arborist.gain_ci_high",
    "p_value": "arborist.p_value",
}
_BAD_KEY_CHARS = re.compile(r"[^\w\-. /]")  # MLflow's keys: alphanumerics, _ - . space /


class ExportError(RuntimeError):
    """An export that cannot be done as asked; the message says what to do."""


@dataclass(frozen=True)
class Point:
    key: str
    value: float
    timestamp_ms: int
    step: int


@dataclass
class RunContent:
    """One MLflow run as arborist writes it, before any tracking store is involved."""

    name: str
    status: str  # RUNNING | FINISHED | FAILED | KILLED
    start_ms: int | None
    end_ms: int | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[Point] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class ExportResult:
    experiment_id: str
    experiment_name: str
    trials_created: int = 0
    trials_updated: int = 0  # already there; tags (the node's decision) or a cut-short write completed
    trials_unchanged: int = 0
    nodes_created: int = 0
    nodes_updated: int = 0
    trials_not_finished: int = 0  # requested or running: exported by a later export, once finished
    trials_never_run: int = 0  # requested, then the campaign ended first: they have no run


# ----- reading the campaign ----------------------------------------------------------------
def read_campaign(campaign_dir: Path) -> tuple[CampaignConfig, SearchTree]:
    """The campaign's config and its tree replayed from the ledger: the one place this export reads
    the ledger, so another reader can take its place here alone."""
    from orchestrator import campaign, report

    config = campaign.load_campaign_config(campaign_dir)
    return config, report.load_tree(config)


def campaign_id(config: CampaignConfig, tree: SearchTree) -> str:
    """Tells this campaign from another of the same name (same config run twice): its name, snapshot
    commit and first session's start."""
    first = tree.sessions[0]["ts"] if tree.sessions else 0.0
    payload = json.dumps([config.name, tree.meta.get("snapshot_commit", ""), first])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# ----- what each run holds -----------------------------------------------------------------
def trial_run(config: CampaignConfig, tree: SearchTree, record: TrialRecord, cid: str) -> RunContent:
    """A finished trial's run: the node's params and the seed; its metrics, with the step series of
    its progress reports; tags naming it, its change, its node's decision, fingerprint and placement."""
    result = record.result
    assert result is not None, f"{record.trial_id} has not finished"
    node = tree.nodes[record.node_id]
    params = {_key(k): _param_value(v) for k, v in node.params.items()}
    params["seed" if "seed" not in params else "arborist.seed"] = str(record.seed)
    tags = {
        **_campaign_tags(config, cid),
        TAG_NODE: node.node_id,
        TAG_TRIAL: record.trial_id,
        "arborist.seed": str(record.seed),
        "arborist.block": str(record.block),
        "arborist.state": result.state.value,
        **_change_tags(node),
        **_decision_tags(node),
        **_fingerprint_tags(result),
        "arborist.placement": _truncate(_placement(result), SUMMARY_CHARS),
        "mlflow.source.name": "arborist",
        "mlflow.source.git.commit": node.commit,
        NOTE_TAG: _truncate(_trial_note(node, result), NOTE_CHARS),
    }
    if result.sandbox:
        tags["arborist.sandbox"] = result.sandbox
    if result.self_reported:
        tags["arborist.self_reported"] = "true"
    if result.state is not TrialState.COMPLETE:
        stage = f"{result.failure_stage.value}: " if result.failure_stage else ""
        tags["arborist.failure"] = _truncate(f"{stage}{result.message}", SUMMARY_CHARS * 4)
    start_ms = _ms(result.started_at or result.finished_at)
    end_ms = _ms(result.finished_at or result.started_at)
    return RunContent(
        name=record.trial_id, status=RUN_STATUS.get(result.state, "FAILED"), start_ms=start_ms, end_ms=end_ms,
        params=params, metrics=_trial_points(result, start_ms or 0, end_ms or 0), tags=tags,
    )


def node_run(config: CampaignConfig, tree: SearchTree, node: Node, cid: str) -> RunContent:
    """A node's run, the parent of its trials' runs: its params, its decision, and the mean of each
    metric over its complete seeds (step: how many seeds it had then)."""
    trials = [r.result for r in tree.node_trials(node.node_id) if r.result is not None]
    start_ms = _ms(min((r.started_at for r in trials if r.started_at), default=0.0))
    end_ms = _ms(max((r.finished_at for r in trials if r.finished_at), default=0.0))
    decided = node.status is not NodeStatus.OPEN
    status = "FAILED" if node.status is NodeStatus.FAILED else "FINISHED" if decided else "RUNNING"
    points = []
    for name in sorted({m for r in trials if r.state is TrialState.COMPLETE for m in r.metrics}):
        values = list(tree.completed_values(node.node_id, name).values())
        if values:
            points.append(Point(_key(name), float(statistics.fmean(values)), end_ms or 0, len(values)))
    evidence = (node.decision or {}).get("evidence") or {}
    for key, name in DECISION_METRICS.items():
        value = _number(evidence.get(key))
        if value is not None:
            points.append(Point(name, value, end_ms or 0, int(evidence.get("n") or len(node.seeds))))
    describe = node.change.describe() if node.change else "baseline"
    tags = {
        **_campaign_tags(config, cid),
        TAG_NODE: node.node_id,
        "arborist.parent": node.parent_id or "",
        "arborist.origin": node.origin,
        "arborist.seeds": ",".join(str(s) for s in node.seeds),
        **_change_tags(node),
        **_decision_tags(node),
        "mlflow.source.name": "arborist",
        "mlflow.source.git.commit": node.commit,
        # Written on every node, so a re-export takes it off the node that held it before.
        "arborist.incumbent": "true" if tree.incumbent_id == node.node_id else "false",
        NOTE_TAG: _truncate(_node_note(node), NOTE_CHARS),
    }
    return RunContent(
        name=_truncate(f"{node.node_id} {describe}", 100), status=status, start_ms=start_ms,
        end_ms=end_ms if decided else None,
        params={_key(k): _param_value(v) for k, v in node.params.items()}, metrics=points, tags=tags,
    )


def _campaign_tags(config: CampaignConfig, cid: str) -> dict[str, str]:
    return {TAG_CAMPAIGN: config.name, TAG_CAMPAIGN_ID: cid, "arborist.objective": config.objective}


def _change_tags(node: Node) -> dict[str, str]:
    change = node.change
    if change is None:
        return {"arborist.change": "baseline", "arborist.change.kind": "baseline"}
    return {
        "arborist.change": _truncate(change.describe(), SUMMARY_CHARS),
        "arborist.change.kind": change.kind,
        "arborist.change.aspect": change.aspect,
        "arborist.change.proposer": change.proposer,
        **({"arborist.change.source_id": _truncate(change.source_id, SUMMARY_CHARS)} if change.source_id else {}),
    }


def _decision_tags(node: Node) -> dict[str, str]:
    """The node's decision as it stands: its status, and for a decision on evidence the paired gain
    over its parent with its interval (positive is better, whatever the objective's direction)."""
    decision = node.decision or {}
    evidence = decision.get("evidence") or {}
    tags = {"arborist.decision.status": node.status.value}
    gain, low, high = (_number(evidence.get(k)) for k in ("mean", "ci_low", "ci_high"))
    summary = node.status.value
    if gain is not None:
        tags["arborist.decision.gain"] = f"{gain:.6g}"
        summary += f": gain {gain:+.4g}"
    if low is not None and high is not None:
        tags["arborist.decision.interval"] = f"[{low:.6g}, {high:.6g}]"
        summary += f" [{low:.4g}, {high:.4g}]"
    p_value = _number(evidence.get("p_value"))
    if p_value is not None:
        tags["arborist.decision.p_value"] = f"{p_value:.4g}"
    if decision.get("reason"):
        tags["arborist.decision.reason"] = _truncate(str(decision["reason"]), SUMMARY_CHARS * 2)
    tags["arborist.decision"] = summary
    return tags


def _fingerprint_tags(result: TrialResult) -> dict[str, str]:
    """The fingerprint's key (trials are compared only within one) and the fields a person checks
    first; the package list is in the ledger (fp_packages)."""
    fp = result.fingerprint
    gpu = f"{fp.gpu_count} x {fp.gpu_model}" if fp.gpu_count else "none"
    fields = {
        "gpu": _truncate(gpu, SUMMARY_CHARS),
        "cpu": _truncate(f"{fp.cpu_count} x {fp.cpu_model}", SUMMARY_CHARS) if fp.cpu_model else "",
        "python": fp.python, "lock_hash": fp.lock_hash, "data_hash": fp.data_hash,
        "budget_s": f"{fp.budget_s:g}" if fp.budget_s else "",
    }
    return {
        "arborist.fingerprint": fp.comparability_key(),
        **{f"arborist.fingerprint.{name}": value for name, value in fields.items() if value},
    }


def _placement(result: TrialResult) -> str:
    where = result.placement
    host = where.hostname or result.worker or "unknown host"
    parts = [f"{host} ({where.node_ip})" if where.node_ip else host]
    if where.gpu_ids:
        parts.append(f"GPUs {where.gpu_ids}")
    if where.accelerator:
        parts.append(where.accelerator)
    if where.ray_node_id:
        parts.append(f"Ray node {where.ray_node_id}")
    return ", ".join(parts)


def _trial_points(result: TrialResult, start_ms: int, end_ms: int) -> list[Point]:
    """Each numeric field of each progress report at its step (or its place in the list), then the
    final metrics at the last step, stamped last: MLflow shows them as the run's values."""
    points = []
    last_step = 0
    for index, report in enumerate(result.reports):
        raw_step = _number(report.get("step"))
        step = int(raw_step) if raw_step is not None else index
        last_step = max(last_step, step)
        for name, value in report.items():
            if name != "step" and _number(value) is not None:
                points.append(Point(_key(str(name)), float(value), start_ms, step))
    points.extend(Point(_key(name), float(value), end_ms, last_step) for name, value in result.metrics.items())
    return points


def _trial_note(node: Node, result: TrialResult) -> str:
    lines = [f"{result.trial_id}: seed {result.seed} of node {node.node_id} ({node.status.value})"]
    if node.change is not None:
        lines.append(f"Change ({node.change.proposer}): {node.change.describe()}")
    if result.state is not TrialState.COMPLETE:
        lines.append(f"{result.state.value}: {result.message}")
        if result.log_tail:
            lines.append(f"Log tail:\n```\n{result.log_tail[-2000:]}\n```")
    return "\n\n".join(lines)


def _node_note(node: Node) -> str:
    if node.change is None:
        return f"{node.node_id}: the baseline (the project as snapshotted, default params)"
    lines = [f"{node.node_id}: {node.change.describe()} (child of {node.parent_id}; proposer {node.change.proposer})"]
    if node.change.hypothesis:
        lines.append(f"Hypothesis: {node.change.hypothesis}")
    reason = (node.decision or {}).get("reason")
    if reason:
        lines.append(f"Decision: {node.status.value}, {reason}")
    return "\n\n".join(lines)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _key(name: str) -> str:
    return _truncate(_BAD_KEY_CHARS.sub("_", name), MAX_KEY_CHARS)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return _truncate(text, MAX_PARAM_CHARS)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _ms(seconds: float) -> int | None:
    return round(seconds * 1000) if seconds else None


# ----- writing to MLflow -------------------------------------------------------------------
def export(campaign_dir: Path, tracking_uri: str, experiment: str | None = None) -> ExportResult:
    """Every finished trial of the campaign as an MLflow run under a run per node, in `experiment`
    (default: the campaign's name) of the tracking store at `tracking_uri`."""
    config, tree = read_campaign(campaign_dir)
    cid = campaign_id(config, tree)
    client = _client(tracking_uri)
    name = experiment or config.name
    experiment_id = _experiment(client, tracking_uri, name, config, campaign_dir)
    result = ExportResult(experiment_id, name)
    nodes, trials = _existing(client, tracking_uri, experiment_id, cid)
    from mlflow.exceptions import MlflowException

    try:
        _write(client, config, tree, cid, result, nodes, trials)
    except (MlflowException, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:400]
        raise ExportError(
            f"the export to {tracking_uri} (experiment {name!r}) stopped after {result.trials_created} new trial "
            f"runs: {first}. Export again once the store answers: the runs written so far are found and completed, "
            "none is duplicated."
        ) from exc
    return result


def _write(
    client: Any, config: CampaignConfig, tree: SearchTree, cid: str, result: ExportResult,
    nodes: dict[str, Any], trials: dict[str, Any],
) -> None:
    experiment_id = result.experiment_id
    node_run_ids: dict[str, str] = {}
    for node in sorted(tree.nodes.values(), key=lambda n: n.created_seq):
        if not any(r.result is not None for r in tree.node_trials(node.node_id)):
            continue  # nothing measured yet: its run comes with its first finished trial
        content = node_run(config, tree, node, cid)
        if node.node_id in nodes:
            node_run_ids[node.node_id] = nodes[node.node_id].info.run_id
            result.nodes_updated += _update(client, nodes[node.node_id], content)
        else:
            node_run_ids[node.node_id] = _create(client, experiment_id, content)
            result.nodes_created += 1
    for record in tree.trials.values():
        if record.result is None:
            if tree.phase is Phase.DONE:
                result.trials_never_run += 1
            else:
                result.trials_not_finished += 1
            continue
        content = trial_run(config, tree, record, cid)
        content.tags[PARENT_TAG] = node_run_ids[record.node_id]
        existing = trials.get(record.trial_id)
        if existing is None:
            _create(client, experiment_id, content)
            result.trials_created += 1
        elif _update(client, existing, content):
            result.trials_updated += 1
        else:
            result.trials_unchanged += 1


def _client(tracking_uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ExportError(
            f"exporting to MLflow needs the MLflow client, which is not installed here ({exc}). "
            f"Install it with: {INSTALL_HINT}"
        ) from exc
    _check_server(tracking_uri)
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        client.search_experiments(max_results=1)  # a store that cannot be opened says so now, not mid-export
    except Exception as exc:
        raise ExportError(_store_problem(tracking_uri, exc)) from exc
    return client


def _check_server(tracking_uri: str) -> None:
    """A tracking server that nothing answers for is named at once: MLflow's client retries a refused
    connection for minutes before it gives up."""
    parsed = urllib.parse.urlsplit(tracking_uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=SERVER_CONNECT_S).close()
    except OSError as exc:
        raise ExportError(
            f"no MLflow tracking server answers at {parsed.hostname}:{port} ({tracking_uri}): {exc}. Start it "
            "(mlflow server --backend-store-uri sqlite:///mlflow.db --port 5000) or check the URL; a local store "
            "needs no server: --mlflow sqlite:////absolute/path/mlflow.db"
        ) from exc


def _store_problem(tracking_uri: str, exc: Exception) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:400]
    hint = (
        "A local store is a sqlite file: --mlflow sqlite:////absolute/path/mlflow.db (made if missing); "
        "a tracking server is its URL: --mlflow http://HOST:5000."
    )
    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        hint += (" MLflow keeps folder stores (file:// or a plain path) in maintenance mode: set "
                 "MLFLOW_ALLOW_FILE_STORE=true to write one anyway.")
    return f"MLflow tracking store {tracking_uri!r} could not be used: {first}. {hint}"


def _experiment(client: Any, tracking_uri: str, name: str, config: CampaignConfig, campaign_dir: Path) -> str:
    try:
        found = client.get_experiment_by_name(name)
        if found is None:
            return str(client.create_experiment(name, tags={
                TAG_CAMPAIGN: config.name, "arborist.campaign_dir": str(campaign_dir),
                NOTE_TAG: f"arborist campaign {config.name} ({campaign_dir}): one parent run per node, "
                          f"one child run per trial; objective {config.objective}.",
            }))
    except Exception as exc:
        raise ExportError(_store_problem(tracking_uri, exc)) from exc
    if found.lifecycle_stage == "deleted":
        raise ExportError(
            f"MLflow experiment {name!r} in {tracking_uri} is deleted (in its trash), so no run can be added to "
            f"it. Restore it (mlflow experiments restore --experiment-id {found.experiment_id}) or export to "
            "another one with --experiment NAME."
        )
    return str(found.experiment_id)


def _existing(client: Any, tracking_uri: str, experiment_id: str, cid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """This campaign's runs already in the experiment: node runs by node, trial runs by trial.

    Deleted runs are not counted: a run someone deleted is written again."""
    nodes: dict[str, Any] = {}
    trials: dict[str, Any] = {}
    token = None
    while True:
        try:
            page = client.search_runs(
                [experiment_id], filter_string=f"tags.`{TAG_CAMPAIGN_ID}` = '{cid}'", max_results=1000,
                page_token=token,
            )
        except Exception as exc:
            raise ExportError(_store_problem(tracking_uri, exc)) from exc
        for run in page:
            tags = run.data.tags
            if TAG_TRIAL in tags:
                trials[tags[TAG_TRIAL]] = run
            elif TAG_NODE in tags:
                nodes[tags[TAG_NODE]] = run
        token = page.token
        if not token:
            return nodes, trials


def _create(client: Any, experiment_id: str, content: RunContent) -> str:
    tags = {k: _truncate(v, MAX_TAG_CHARS) for k, v in content.tags.items()}
    run = client.create_run(experiment_id, start_time=content.start_ms, tags=tags, run_name=content.name)
    run_id = str(run.info.run_id)
    _log(client, run_id, content.params, content.metrics, {})
    # Terminated last: a run still RUNNING after an export was cut short; the next export completes it.
    if content.status != "RUNNING":
        _terminate(client, run_id, content)
    return run_id


def _update(client: Any, run: Any, content: RunContent) -> bool:
    """Bring an existing run up to `content`; whether anything was written.

    Tags that changed are rewritten (the node's decision moves as its test goes on); params and
    metric series missing after a cut-short export are added; a metric whose last value changed
    (a node's mean over more seeds) gets a new point. Params, once logged, cannot change."""
    data = run.data
    tags = {k: v for k, v in content.tags.items() if data.tags.get(k) != v}
    params = {k: v for k, v in content.params.items() if k not in data.params}
    latest: dict[str, Point] = {}
    for point in content.metrics:
        held = latest.get(point.key)
        if held is None or (point.step, point.timestamp_ms) >= (held.step, held.timestamp_ms):
            latest[point.key] = point
    points = [p for p in content.metrics if p.key not in data.metrics]
    points += [p for key, p in latest.items() if key in data.metrics and not _same(data.metrics[key], p.value)]
    if tags or params or points:
        _log(client, run.info.run_id, params, points, tags)
    info = run.info
    if info.status != content.status or (content.end_ms is not None and info.end_time != content.end_ms):
        _terminate(client, run.info.run_id, content)
        return True
    return bool(tags or params or points)


def _terminate(client: Any, run_id: str, content: RunContent) -> None:
    if content.status == "RUNNING":
        client.update_run(run_id, status="RUNNING")
    else:
        client.set_terminated(run_id, status=content.status, end_time=content.end_ms)


def _log(client: Any, run_id: str, params: dict[str, str], points: list[Point], tags: dict[str, str]) -> None:
    from mlflow.entities import Metric, Param, RunTag

    metrics = [Metric(p.key, p.value, p.timestamp_ms, p.step) for p in points]
    named = [Param(k, v) for k, v in params.items()] + [RunTag(k, _truncate(v, MAX_TAG_CHARS)) for k, v in tags.items()]
    if len(named) <= MAX_PARAMS_TAGS_PER_BATCH and len(named) + len(metrics) <= MAX_METRICS_PER_BATCH:
        # One request (one commit on a sqlite store) for the usual run: each costs tens of ms there.
        client.log_batch(run_id, metrics=metrics, params=[e for e in named if isinstance(e, Param)],
                         tags=[e for e in named if isinstance(e, RunTag)])
        return
    for chunk in _chunks(named, MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=[e for e in chunk if isinstance(e, Param)],
                         tags=[e for e in chunk if isinstance(e, RunTag)])
    for chunk in _chunks(metrics, MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=chunk)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))
