"""The search service: the single authority over the tree, run inside the tree actor.

It hands out trials (`suggest`) as TrialSpecs, each with a token that its result must come back
with (`complete`); the engine decides, the campaign repository holds the nodes, and every event is journaled to the
ledger. It imports no Ray: the cluster layer wraps it in an actor and bridges it to Ray Tune.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.change import Change
from orchestrator.config import CampaignConfig
from orchestrator.dispatch import lost_placement
from orchestrator.engine import FINISHED, SearchEngine
from orchestrator.inbox import inbox_path, read_verdicts
from orchestrator.ledger import Ledger
from orchestrator.proposers.embedder import MemoryEmbedder
from orchestrator.proposers.llm import LLMClient
from orchestrator.proposers.ready import DraftBackend
from orchestrator.proposers.registry import AlgorithmFactory, build_proposers
from orchestrator.reader import journal_path, ledger_uri, node_rows
from orchestrator.tree import Node, Phase, SearchTree, trial_id_for
from trials.patch import validate_diff
from trials.protect import change_problems
from trials.spec import (
    CodeChange,
    EntrypointSpec,
    LimitsSpec,
    MetricSpec,
    RetentionSpec,
    SandboxSpec,
    TrialSpec,
)
from trials.worktree import CampaignRepo

__all__ = ["FINISHED", "RepoWorkspace", "SearchService", "node_rows"]

log = logging.getLogger("arborist.search")
INBOX_PROPOSER = "inbox"  # `arborist inject` writes there; it comes before the configured proposers
# nodes.parquet is rewritten whole: with 100,000 nodes that takes seconds of the tree actor's time,
# so between the first write and the last (at the end) it is rewritten at most this often.
NODES_EVERY_S = 60.0


class SearchService:
    """The tree actor's object: the engine, with the campaign repository and the ledger."""

    def __init__(
        self,
        config: dict[str, Any],
        setup: dict[str, Any] | None = None,
        suggester_factory: AlgorithmFactory | None = None,
        drafts: DraftBackend | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock` stamps events and measures the wall-clock budget (a test's may be fake)."""
        self.config = CampaignConfig.model_validate(config)
        assert self.config.campaign_dir is not None
        self.campaign_dir = Path(self.config.campaign_dir)
        self._storage_warnings: list[str] = []
        self.ledger = Ledger(ledger_uri(self.config), journal_path(self.campaign_dir), s3=self.config.s3,
                             warn=self._storage_warnings.append)
        # The tree actor serves one call at a time: its time per trial (the suggest() that
        # dispatched it and the complete() that recorded it) is time every other slot may wait.
        self._dispatch_s: dict[str, float] = {}  # trial id -> its suggest() call, until it completes
        self._serial_s: list[float] = []  # per recorded trial: suggest() + complete()
        self.repo = CampaignRepo(self.campaign_dir / "repo")
        self.tree = SearchTree.replay(self.ledger.load_events(), sink=self.ledger.append, clock=clock)
        inbox = [(INBOX_PROPOSER, inbox_path(self.campaign_dir))]
        proposers = build_proposers(self.config, suggester_factory, drafts, extra_queues=inbox,
                                    campaign_dir=self.campaign_dir)
        workspace = RepoWorkspace(self.repo, self.config)
        self._embedder = self._make_embedder()
        self._nodes_written_at: float | None = None  # time.monotonic() of the last nodes.parquet write
        self.engine = SearchEngine(
            self.config, self.tree, proposers, workspace, on_finish=self._flush,
            embed=self._embedder.embed if self._embedder else None,
            verdicts=lambda: read_verdicts(self.campaign_dir),
        )
        resuming = bool(self.tree.nodes)
        if not resuming:
            if setup is None:
                raise ValueError("a new campaign needs its setup (snapshot, bundle, protected hashes)")
            self.engine.start(setup, setup["snapshot_commit"])
        # Before restore(): the trials it marks lost are this session's events. Were they the last
        # session's, that session would end now, and the time the campaign lay dead would count.
        self.tree.record("session_started", ts=clock(), resumed=len(self.tree.sessions) > 0)
        if resuming:
            self.engine.restore()
        self._flush()

    def _flush(self) -> None:
        """Write the journal's events to Parquet, and the nodes when they are due (or the campaign ended)."""
        now = time.monotonic()
        written = self._nodes_written_at
        due = written is None or now - written >= NODES_EVERY_S or self.tree.phase is Phase.DONE
        if self.ledger.flush(self.node_rows() if due else None, self.tree.trials) and due:
            self._nodes_written_at = now
        self._journal_storage_warnings()

    def _journal_storage_warnings(self) -> None:
        """Storage trouble goes to the journal (on local disk, so it survives the outage) and the log."""
        for message in self._storage_warnings:
            log.warning("%s", message)
            self.tree.record("note", message=message)
        self._storage_warnings.clear()

    def _make_embedder(self) -> MemoryEmbedder | None:
        model = self.config.memory.embedding_model
        if model is None or self.config.llm is None:
            return None
        client = LLMClient(self.config.llm, max_usd=self.config.budget.max_llm_usd, spent_usd=self.tree.llm_usd)
        return MemoryEmbedder(client, model)

    def _journal_embeddings(self) -> None:
        if self._embedder is not None:
            for type_, data in self._embedder.drain_events():
                self.tree.record(type_, **data)

    # ----- the Searcher protocol ---------------------------------------------------------
    def suggest(self) -> dict[str, Any] | str | None:
        """The next trial to run ({"spec": a TrialSpec dict, "token": its dispatch token}), None
        to wait, or FINISHED. The token is for the caller alone: the trial must not see it."""
        began = time.perf_counter()
        if self._embedder is not None:
            self._embedder.sync_spent(self.tree.llm_usd)
        dispatch = self.engine.next_trial()
        self._journal_embeddings()
        if dispatch is None or isinstance(dispatch, str):
            return dispatch
        record = dispatch.record
        answer = {"spec": self._spec(record.node_id, record.seed).to_dict(), "token": dispatch.token}
        self._dispatch_s[record.trial_id] = time.perf_counter() - began
        return answer

    def complete(
        self, trial_id: str, token: str, result: dict[str, Any] | None, error: bool = False,
        placement: dict[str, Any] | None = None,
    ) -> bool:
        """Record a trial's result, given with its dispatch token; a trial with no result was lost
        (on the node `placement` says, when known) and runs again. False when refused: a wrong
        token, or a trial not running in this session."""
        began = time.perf_counter()
        taken = self.engine.record_result(trial_id, token, result, error, placement)
        self._journal_embeddings()
        if self.ledger.due():
            self._flush()
        if taken:
            self._serial_s.append(self._dispatch_s.pop(trial_id, 0.0) + time.perf_counter() - began)
        return taken

    def should_stop(self, trial_id: str) -> bool:
        """Whether the worker running `trial_id` is to stop it: True once the wall-clock budget and
        its grace ran out with the trial still running (it is then recorded as STOPPED). Workers
        ask this every few seconds while a trial runs; asking also enforces the budget when no
        trial reports and none is asked for."""
        stop = self.engine.should_stop(trial_id)
        if stop and self.ledger.due():
            self._flush()
        return stop

    def bundle_bytes(self, bundle_id: str, placement: dict[str, Any] | None = None) -> bytes:
        """The campaign bundle, for a machine that has no copy of it yet and no copy in Ray's
        object store (it fetches it once per scratch folder: trials/worktree.py); journaled as
        `bundle_fetched` journals it."""
        self._check_bundle(bundle_id)
        data = Path(self.tree.meta["bundle_path"]).read_bytes()
        self.bundle_fetched(bundle_id, len(data), placement)
        return data

    def bundle_fetched(self, bundle_id: str, size: int, placement: dict[str, Any] | None = None) -> None:
        """Journal (`bundle_sent`) that a machine took its copy of the bundle, with where the worker
        says it runs (`placement`, a Placement's fields), so the ledger shows every node fetching
        it once, whether from the object store or from here."""
        self._check_bundle(bundle_id)
        where = lost_placement(placement)
        self.tree.record("bundle_sent", bundle_id=bundle_id, bytes=size, **({"placement": where} if where else {}))

    def _check_bundle(self, bundle_id: str) -> None:
        if bundle_id != self.tree.meta.get("bundle_id"):
            raise ValueError(f"unknown bundle {bundle_id}")

    def close(self) -> dict[str, Any]:
        """Flush the ledger; trials still handed out when the campaign stops will run again."""
        self.engine.release_in_flight()
        self._flush()  # storage trouble, or its end, is journaled before the last write
        self.ledger.close(self.node_rows(), trials=self.tree.trials)
        return {**self.progress(), "tree_actor_ms_per_trial": self.serial_ms()}

    def serial_ms(self) -> dict[str, float | int]:
        """The tree actor's own time per trial of this session, in milliseconds: the suggest()
        that dispatched it plus the complete() that recorded it (p50, p99, max, and how many)."""
        times = sorted(1000.0 * s for s in self._serial_s)
        if not times:
            return {"trials": 0}

        def quantile(q: float) -> float:
            return round(times[min(len(times) - 1, int(q * len(times)))], 2)

        return {"trials": len(times), "p50": quantile(0.5), "p99": quantile(0.99), "max": round(times[-1], 2)}

    def progress(self) -> dict[str, Any]:
        return self.engine.progress()

    # ----- specs and views ---------------------------------------------------------------
    def _spec(self, node_id: str, seed: int) -> TrialSpec:
        node = self.tree.nodes[node_id]
        config, meta = self.config, self.tree.meta
        chain = []
        for nid in node.chain:
            link = self.tree.nodes[nid].change
            if link is not None and link.diff:
                chain.append(CodeChange(change_id=nid, aspect=link.aspect, diff=link.diff))
        entry = config.entrypoint
        heldout = {name: str(path) for name, path in config.data.heldout.items()}
        return TrialSpec(
            trial_id=trial_id_for(node_id, seed),
            node_id=node_id,
            seed=seed,
            params=dict(node.params),
            base_commit=meta["snapshot_commit"],
            bundle_id=meta["bundle_id"],
            chain=chain,
            entrypoint=EntrypointSpec(
                train=entry.train, evaluate=entry.evaluate, budget_s=entry.budget_s,
                evaluate_budget_s=entry.evaluate_budget_s, setup=entry.setup, env=dict(entry.env),
                evaluate_env={**entry.evaluate_env, **heldout}, inherit_env=list(entry.inherit_env),
            ),
            metrics=[MetricSpec(name=name, regex=m.regex) for name, m in config.metrics.items()
                     if name != "train_time_s"],
            protected=dict(meta["protected"]),
            scratch_dir=str(config.ray.scratch_dir),
            data_files=[*config.data.files, *heldout.values()],
            packages=list(config.packages),
            sandbox=SandboxSpec(
                mode=config.sandbox.mode, network=config.sandbox.network,
                read_only=[str(path) for path in config.sandbox.read_only],
            ),
            limits=LimitsSpec(
                memory_mb=config.limits.memory_mb, max_cpu_s=config.limits.max_cpu_s,
                max_log_mb=config.limits.max_log_mb, max_output_mb=config.limits.max_output_mb,
            ),
            retention=RetentionSpec(
                keep_complete=config.ray.keep_complete_trials, keep_failed=config.ray.keep_failed_trials,
            ),
        )

    def node_rows(self) -> list[dict[str, Any]]:
        return node_rows(self.tree, self.config)


class RepoWorkspace:
    """Nodes as commits of the campaign repository; code changes screened against it."""

    def __init__(self, repo: CampaignRepo, config: CampaignConfig) -> None:
        self._repo = repo
        self._config = config

    def check(self, parent: Node, change: Change) -> str:
        problems = validate_diff(
            change.diff, protected=self._config.protected, editable=self._config.editable,
            limits=self._config.limits,
        )
        if problems:
            return "; ".join(problems)
        error = self._repo.check_diff(parent.commit, change.diff)
        if error:
            return f"does not apply on {parent.node_id}: {error.strip()}"
        return "; ".join(change_problems(self._repo, parent.commit, change.diff, self._config.protected))

    def sources(self, parent: Node, change: Change) -> dict[str, tuple[str, str]] | None:
        if not change.diff:
            return None
        return self._repo.changed_files(parent.commit, change.diff)

    def commit(self, parent: Node, node_id: str, change: Change, params: dict[str, Any]) -> str:
        return self._repo.commit_node(
            parent.commit, node_id, change.diff or None, params, f"{node_id}: {change.describe()}"
        )
