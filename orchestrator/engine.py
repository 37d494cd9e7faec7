"""The search engine: the tree, the policy's decisions carried out, proposers and memory.

It knows nothing of git, Parquet or Ray: a Workspace turns an admitted change into a commit and
screens code changes, a sink journals events. The search service (real campaigns) and the
simulator (synthetic ones) drive the same engine, so the simulator measures the real policy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from orchestrator import admission, blocks, drift, history, integration, policy
from orchestrator.accounts import Accounts
from orchestrator.change import Change
from orchestrator.config import CampaignConfig
from orchestrator.dispatch import Dispatch, lost_placement, new_token, result_problems, shown, token_matches
from orchestrator.memory import Memory, same_change_as
from orchestrator.proposers.base import Answer, Outcome, ProposalContext, Proposer, Signal
from orchestrator.proposers.queue import QueueFileError
from orchestrator.tree import ROOT_ID, Node, NodeStatus, Phase, Proposal, SearchTree, TrialRecord, trial_id_for
from trials.spec import FailureStage, Placement, TrialResult, TrialState

FINISHED = "FINISHED"
MAX_LOST = 3  # a trial lost to infrastructure this often is recorded as failed
MAX_PROPOSAL_TRIES = 8  # rejected proposals tolerated per expansion before moving on
MAX_REFUSAL_NOTES = 100  # refused results journaled per session: a forger must not fill the journal


class Workspace(Protocol):
    """Where nodes live: a git repository in campaigns, nothing in the simulator."""

    def check(self, parent: Node, change: Change) -> str:
        """Why a code change cannot extend the parent ("" when it can)."""

    def commit(self, parent: Node, node_id: str, change: Change, params: dict[str, Any]) -> str:
        """Make the child's commit; returns its id."""

    def sources(self, parent: Node, change: Change) -> dict[str, tuple[str, str]] | None:
        """Each file a code change touches, before and after, at the parent (None: unknown)."""


class SearchEngine:
    def __init__(
        self,
        config: CampaignConfig,
        tree: SearchTree,
        proposers: list[Proposer],
        workspace: Workspace,
        *,
        clock: Callable[[], float] | None = None,
        on_finish: Callable[[], None] | None = None,
        embed: Callable[[list[str]], list[list[float]]] | None = None,
        verdicts: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.config = config
        self.tree = tree
        self.proposers = proposers
        self.workspace = workspace
        self.memory = Memory(config.memory, embed=embed, notes=config.metrics)
        self._invalid_keys: dict[str, str] = {}  # exact key of a screened-out proposal -> its id
        self.accounts = Accounts(config)
        # One clock for event stamps and budgets, so elapsed time is measured on one scale.
        self._clock = clock if clock is not None else tree.clock
        self._on_finish = on_finish
        self._verdicts = verdicts  # a person's approve/reject of suspect nodes, read at each step
        # Trial id -> the token its result must come back with. How many trials run is the
        # tree's count (trials_running): these are the same trials, but the tokens are secrets that
        # never reach the journal, and only this session's dispatches may report.
        self._in_flight: dict[str, str] = {}
        self._reported: dict[str, str] = {}  # trial id -> the token of the report taken for it
        self._refusals = 0
        self._last_proposer_error: dict[str, str] = {}
        # The tree's history in words costs a pass over every node: only LLM proposers read it.
        self._wants_records = any(p.wants_records for p in proposers)
        self._history_stamp: tuple[int, int] | None = None  # (mtime, size) of history.jsonl when last read
        self._finished: set[str] = set()  # proposers that answered FINISHED: never asked again
        self._waiting: set[str] = set()  # proposers that answered WAIT in the latest expansion
        self._stopped: set[str] = set()  # trials this session stopped at the end of the wall-clock budget
        # What proposers read of the decided nodes, kept up to date instead of rebuilt at every
        # expansion (a pass over every node, at every step while an LLM drafts).
        self._history = DecidedRows(tree, _history_row)
        self._records = DecidedRows(tree, self._record)
        self._incumbent_ranking = policy.incumbent_ranking(tree, config)
        self._expansion_ranking = policy.expansion_ranking(tree, config)

    # ----- start and restore -------------------------------------------------------------
    def start(self, meta: dict[str, Any], root_commit: str) -> None:
        self.tree.record("campaign_started", name=self.config.name, **meta)
        self.tree.record(
            "node_created", node_id=ROOT_ID, parent_id=None, change=None,
            commit=root_commit, params=self.config.default_params(), origin="root",
        )
        seeds = policy.seed_sequence(self.config)[: self.config.seeds.baseline]
        self.tree.record("seeds_requested", node_id=ROOT_ID, seeds=seeds)
        self._import_history()
        self._screen_queued(self.tree.root)

    def restore(self) -> None:
        """Rebuild memory and proposer state; trials cut off by the stop run again."""
        by_name = {p.name: p for p in self.proposers}
        for row in self.tree.imported:
            self._remember_imported(row)
        for proposal in self.tree.proposals:
            if proposal.change.proposer != integration.PROPOSER:
                self._remember_again(proposal)
            proposer = by_name.get(proposal.change.proposer)
            if proposer is None:
                continue
            proposer.restore(proposal.change)
            outcome = self._outcome(proposal.node_id, proposal.verdict, proposal.reason, proposal.duplicate_of)
            if outcome is not None:
                proposer.observe(proposal.change, outcome)
        for proposer in self.proposers:
            mode = self.tree.proposer_modes.get(proposer.name)
            if mode is not None:
                proposer.set_mode(mode)
            proposer.drain_events()  # what replay re-derived is in the journal already
        for record in self.tree.running_trials():
            self.tree.record("trial_lost", trial_id=record.trial_id, reason="campaign stopped while it ran")
        self.accounts = Accounts.rebuild(self.config, self.tree)
        self._import_history()

    # ----- imported history; the queues screened at the start -----------------------------
    def _import_history(self) -> None:
        """Journal and remember the rows `arborist import-log` staged since the last look
        (orchestrator/history.py), before any proposal is screened against the memory."""
        if self.config.campaign_dir is None:
            return
        campaign_dir = Path(self.config.campaign_dir)
        try:
            stat = history.history_path(campaign_dir).stat()
        except FileNotFoundError:
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._history_stamp:
            return
        self._history_stamp = stamp
        known = {row["id"] for row in self.tree.imported}
        for row in history.staged(campaign_dir):
            if row["id"] not in known:
                self.tree.record("history_imported", **row)
                self._remember_imported(row)

    def _remember_imported(self, row: dict[str, Any]) -> None:
        """An imported row is an idea tried on the baseline; a crash row a failed try of it."""
        root = self.tree.nodes.get(ROOT_ID)
        params = root.params if root is not None else self.config.default_params()
        entry = self.memory.entry(history.imported_change(row, self.config), ROOT_ID, params)
        crashed = row.get("status") == "crash"
        self.memory.remember(entry, row["id"], row["id"] if crashed else None)
        if crashed:
            self.memory.failed(row["id"])

    def _screen_queued(self, parent: Node) -> None:
        """Screen every item a queue holds at the start, so what needs no trial to be rejected (a diff
        touching a protected file, a repeat of imported history) is rejected before any trial runs,
        not when the queue reaches it. An item whose diff does not apply on the baseline keeps its
        turn: it may apply on the node it is proposed to later."""
        for proposer in self.proposers:
            pending = getattr(proposer, "pending", None)
            if pending is None:
                continue
            for change in pending(parent.params):
                verdict = admission.screen(self.config, self.memory, self._invalid_keys, self.workspace, parent,
                                           change)
                if verdict.accepted or verdict.reason.startswith(f"does not apply on {parent.node_id}"):
                    continue
                self._reject(self.tree.next_proposal_id(), parent, change, verdict, proposer)
                proposer.restore(change)  # taken from the queue: not proposed again

    def _remember_again(self, proposal: Proposal) -> None:
        parent = self.tree.nodes.get(proposal.parent_id)
        params = parent.params if parent is not None else {}
        lineage = parent.chain if parent is not None else ()
        entry = self.memory.entry(proposal.change, proposal.parent_id, params, key=proposal.memory_key or None,
                                  lineage=lineage)
        if proposal.verdict == "accepted" or proposal.duplicate_of:
            self.memory.remember(entry, proposal.proposal_id, proposal.node_id, same_change_as(proposal.memory))
            node = self.tree.nodes.get(proposal.node_id or "")
            if node is not None and node.status is NodeStatus.FAILED:
                self.memory.failed(node.node_id)
        else:
            self._invalid_keys.setdefault(entry.key, proposal.proposal_id)

    def _outcome(
        self, node_id: str | None, verdict: str, reason: str = "", duplicate_of: str | None = None
    ) -> Outcome | None:
        if node_id is None:
            return Outcome("REJECTED", None, reason, duplicate_of) if verdict == "rejected" else None
        node = self.tree.nodes[node_id]
        if node.status is NodeStatus.OPEN:
            return None
        gain = (node.decision or {}).get("evidence", {}).get("mean")
        reason = (node.decision or {}).get("reason", "")
        return Outcome(node.status.value, gain if node.status is not NodeStatus.FAILED else None, reason)

    def _advance(self) -> None:
        if self.tree.phase is Phase.DONE:
            return
        self.stop_overdue()
        verdicts = self._apply_verdicts()
        if self._judge_settled_nodes() or verdicts or self.tree.incumbent_id is None:
            self._update_incumbent()
        if self.tree.phase is Phase.BASELINE and self._baseline_out_of_time():
            return
        if self.tree.phase is Phase.SEARCH:
            self._search_step()
        if self.tree.phase is Phase.INTEGRATION:
            self._integration_step()
        self._schedule_blocks()
        self._journal_proposer_events()

    def _journal_proposer_events(self) -> None:
        for proposer in self.proposers:
            for type_, data in proposer.drain_events():
                if type_ == "invalid_proposal":
                    self._reject_invalid(data, proposer)
                else:
                    self.tree.record(type_, **{"proposer": proposer.name, **data})

    def _reject_invalid(self, data: dict[str, Any], proposer: Proposer) -> None:
        """A proposal its proposer could not make valid (after repairs): kept in the ledger."""
        change = Change.from_dict(data["change"])
        proposal_id = self.tree.next_proposal_id()
        parent = self.tree.nodes.get(data["parent_id"])
        entry = self.memory.entry(change, data["parent_id"], parent.params if parent else {})
        self._invalid_keys.setdefault(entry.key, proposal_id)
        self.tree.record(
            "proposal", proposal_id=proposal_id, parent_id=data["parent_id"], change=change.to_dict(),
            verdict="rejected", reason=data["reason"], node_id=None, duplicate_of=None, memory_key=entry.key,
        )
        proposer.observe(change, Outcome("REJECTED", None, data["reason"]))

    def _judge_settled_nodes(self) -> bool:
        """Decide every node whose evidence is complete; True when anything was decided."""
        decided = False
        for node in list(self.tree.open_nodes()):
            # One failed trial fails the node: its other seeds would only spend budget.
            if not blocks.node_is_settled(self.tree, node) and not policy.has_failure(self.tree, node):
                continue
            if self._cut_by_budget(node):
                continue  # its evidence is missing what the budget stopped: UNDECIDED when the search stops
            # A node left open waits for its next block, often while siblings finish theirs. Its
            # verdict reads its trials and its parent's (a finish drops the tree's derived figures),
            # its seeds and test, drift, and, while it is screened, the noise pooled from decisions
            # (a test reads the pool frozen at its start): unchanged, it stands.
            pool = len(self.tree.decision_log) if not node.test else -1
            stamp = (len(node.seeds), node.test_seq, pool, self.tree.last_drift_seq)
            figures = self.tree.derived.setdefault(node.node_id, {})
            if figures.get("left_open") == stamp:
                continue
            if node.node_id == ROOT_ID:
                verdict = policy.judge_root(self.tree, self.config)
            else:
                verdict = policy.judge_child(self.tree, node, self.config, self.accounts.noise)
            if verdict.status is None:
                if verdict.start_test:
                    self._start_test(node, verdict.evidence)
                else:
                    figures["left_open"] = stamp
                continue
            self.tree.record(
                "decision", node_id=node.node_id, status=verdict.status.value,
                reason=verdict.reason, evidence=verdict.evidence,
            )
            decided = True
            self.accounts.decided(self.tree, node, verdict.status, verdict.evidence)
            if node.node_id == ROOT_ID:
                if verdict.status is NodeStatus.FAILED:
                    self._finish(f"the baseline failed, so nothing can be compared: {verdict.reason}")
                else:
                    self.tree.record("phase_changed", phase=Phase.SEARCH.value)
            elif node.change is not None:
                if verdict.status is NodeStatus.FAILED:
                    self.memory.failed(node.node_id)
                self._notify(node)
        return decided

    def _start_test(self, node: Node, screening: dict[str, Any]) -> None:
        self.tree.record("test_started", **self.accounts.start_test(self.tree, node), screen=screening)

    def _schedule_blocks(self) -> None:
        if self.tree.phase in (Phase.SEARCH, Phase.INTEGRATION):
            for type_, data in blocks.due(self.tree, self.config):
                self.tree.record(type_, **data)

    def _apply_verdicts(self) -> bool:
        """Carry out a person's verdicts on suspect nodes; True when any node changed.

        A verdict for a node that is no longer suspect (given twice) changes nothing. The
        decision keeps the suspect evidence, so the accounts treat the node as they did while
        it was suspect, live and on replay alike.
        """
        if self._verdicts is None:
            return False
        changed = False
        for item in self._verdicts():
            node = self.tree.nodes.get(str(item.get("node_id")))
            if node is None or node.status is not NodeStatus.SUSPECT:
                continue
            approved = item.get("verdict") == "approve"
            was = (node.decision or {}).get("reason", "")
            self.tree.record(
                "decision", node_id=node.node_id,
                status=(NodeStatus.PROMOTED if approved else NodeStatus.PRUNED).value,
                reason=f"{'approved' if approved else 'rejected'} by {item.get('by')} after it was {was}",
                evidence=(node.decision or {}).get("evidence") or {},
                verdict=item.get("verdict"), by=item.get("by"), at=item.get("at"),
            )
            changed = True
        return changed

    def _notify(self, node: Node) -> None:
        assert node.change is not None
        outcome = self._outcome(node.node_id, "accepted")
        for proposer in self.proposers:
            if proposer.name == node.change.proposer and outcome is not None:
                proposer.observe(node.change, outcome)

    def _update_incumbent(self) -> None:
        if self.tree.phase is Phase.INTEGRATION:
            return
        node = self._incumbent_ranking.best(self.tree)
        best = node.node_id if node is not None else None
        if best is not None and best != self.tree.incumbent_id:
            self.tree.record(
                "incumbent_changed", node_id=best, gain=policy.estimate_vs_root(self.tree, best, self.config)
            )

    def _search_budget_left(self) -> int:
        return self.config.budget.max_trials - self.tree.trials_spent()

    def _search_step(self) -> None:
        stop = policy.search_stop_reason(self.tree, self.config, self._clock())
        if stop is not None:
            if self.running:
                return  # let running trials report before closing the search
            for node in self.tree.open_nodes():
                self.tree.record(
                    "decision", node_id=node.node_id, status=NodeStatus.UNDECIDED.value,
                    reason=f"still under test when the search stopped ({stop})", evidence={},
                )
                self._notify(node)
            self._begin_integration(stop)
            return
        while len(self.tree.open_nodes()) < self.config.search.max_open_nodes:
            if len(self.tree.pending_trials()) >= self.config.ray.max_concurrent:
                return  # enough queued work; expand later with fresher evidence
            if not self._expand():
                break
        if not self.tree.open_nodes() and not self.running:
            if self._waiting:
                return  # an LLM is drafting: wait for it rather than end the search
            # Drafts rejected a moment ago may have changed a proposer's mind (a hybrid falls back
            # to params): hear them out before concluding that nobody has anything left.
            self._journal_proposer_events()
            if self._expand() or self._waiting:
                return
            self._begin_integration("no proposer has anything left to try")

    def _expand(self) -> bool:
        # The search ends when nothing runs and every proposer answered NOTHING or FINISHED
        # here; one that answered WAIT keeps it going until its drafts come in.
        self._waiting = set()
        self._import_history()
        parent = self._expansion_ranking.best(self.tree)
        if parent is None:
            return False
        context = ProposalContext(
            parent_id=parent.node_id, parent_params=dict(parent.params), history=self._history.rows(),
            parent_commit=parent.commit,
            records=self._records.rows() if self._wants_records else [],
            rejected=self._rejected() if self._wants_records else [],
            lineage=[ROOT_ID, *parent.chain][-2::-1] if parent.node_id != ROOT_ID else [],
            llm_usd=self.tree.llm_usd,
        )
        tries = 0
        for proposer in self.proposers:
            while tries < MAX_PROPOSAL_TRIES and proposer.name not in self._finished:
                answer = self._ask(proposer, context)
                if answer is Signal.WAIT:
                    self._waiting.add(proposer.name)
                elif answer is Signal.FINISHED:
                    self._finished.add(proposer.name)
                if not isinstance(answer, Change):
                    break
                tries += 1
                if self._admit(parent, answer, proposer) is not None:
                    return True
        return False

    def _ask(self, proposer: Proposer, context: ProposalContext) -> Answer:
        """One proposal, or a signal. A proposer's error (a hypotheses file edited into invalid
        YAML while the campaign runs) is journaled once and counts as NOTHING; the campaign goes on."""
        try:
            return proposer.propose(context)
        except (QueueFileError, ValueError, OSError) as exc:
            message = f"proposer {proposer.name} skipped: {exc}"
            if message != self._last_proposer_error.get(proposer.name):
                self._last_proposer_error[proposer.name] = message
                self.tree.record("note", message=message)
            return Signal.NOTHING

    def _record(self, node: Node) -> dict[str, Any]:
        """A decided node's row, kept with the node's derived figures (dropped when one of its
        trials finishes) for as long as its decision stands."""
        figures = self.tree.derived.setdefault(node.node_id, {})
        kept = figures.get("record")
        if kept is not None and kept[0] == node.decided_seq:
            row: dict[str, Any] = kept[1]
            return row
        values = list(self.tree.completed_values(node.node_id, self.config.objective).values())
        evidence = (node.decision or {}).get("evidence") or {}
        failed = next((r.result for r in self.tree.node_trials(node.node_id)
                       if r.result is not None and r.state is not TrialState.COMPLETE), None)
        change = node.change
        row = {
            "node_id": node.node_id, "parent_id": node.parent_id, "status": node.status.value,
            "kind": change.kind if change else "baseline", "aspect": change.aspect if change else "",
            "hypothesis": change.hypothesis if change else "baseline",
            "change": change.describe() if change else "",
            "params": dict(node.params), "objective_mean": sum(values) / len(values) if values else None,
            "seeds": len(values), "gain": evidence.get("mean"), "ci_low": evidence.get("ci_low"),
            "ci_high": evidence.get("ci_high"), "reason": (node.decision or {}).get("reason", ""),
            "failure_stage": failed.failure_stage.value if failed and failed.failure_stage else None,
            "log_tail": failed.log_tail[-800:] if failed else "",
        }
        figures["record"] = (node.decided_seq, row)
        return row

    def _rejected(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = []
        for proposal in self.tree.proposals[::-1]:
            if proposal.verdict != "rejected" or proposal.change.proposer == integration.PROPOSER:
                continue
            rows.append({
                "proposal_id": proposal.proposal_id, "parent_id": proposal.parent_id,
                "proposer": proposal.change.proposer, "aspect": proposal.change.aspect,
                "hypothesis": proposal.change.hypothesis, "change": proposal.change.describe(),
                "reason": proposal.reason, "duplicate_of": proposal.duplicate_of,
            })
            if len(rows) >= limit:
                break
        return rows[::-1]

    def _admit(self, parent: Node, change: Change, proposer: Proposer | None) -> Node | None:
        """Screen a proposal; create its node if it passes, else journal why not."""
        proposal_id = self.tree.next_proposal_id()
        verdict = admission.screen(self.config, self.memory, self._invalid_keys, self.workspace, parent, change)
        if not verdict.accepted:
            self._reject(proposal_id, parent, change, verdict, proposer)
            return None
        node_id = self.tree.next_node_id()
        if verdict.remember is not None:
            self.memory.remember(verdict.remember, proposal_id, node_id, same_change_as(verdict.memory))
        extra: dict[str, Any] = {"notes": list(verdict.notes)} if verdict.notes else {}
        params = {**parent.params, **change.params}
        commit = self.workspace.commit(parent, node_id, change, params)
        self.tree.record(
            "proposal", proposal_id=proposal_id, parent_id=parent.node_id, change=change.to_dict(),
            verdict="accepted", reason="", node_id=node_id, duplicate_of=None, memory=verdict.memory,
            memory_key=verdict.key, **extra,
        )
        origin = "integration" if change.proposer == integration.PROPOSER else "search"
        self.tree.record(
            "node_created", node_id=node_id, parent_id=parent.node_id, change=change.to_dict(),
            commit=commit, params=params, origin=origin,
        )
        node = self.tree.nodes[node_id]
        if origin == "integration":
            self._start_test(node, {})  # a graft re-tests changes already screened and promoted
        return node  # its blocks are requested with its siblings' (_schedule_blocks)

    def _reject(
        self, proposal_id: str, parent: Node, change: Change, verdict: admission.Admission, proposer: Proposer | None
    ) -> None:
        """Journal a proposal admission rejected, teach the memory what it says, tell the proposer."""
        if verdict.remember is not None:
            self.memory.remember(verdict.remember, proposal_id, None, same_change_as(verdict.memory))
        elif verdict.invalid:
            self._invalid_keys.setdefault(verdict.key, proposal_id)
        extra: dict[str, Any] = {"notes": list(verdict.notes)} if verdict.notes else {}
        self.tree.record(
            "proposal", proposal_id=proposal_id, parent_id=parent.node_id, change=change.to_dict(),
            verdict="rejected", reason=verdict.reason, node_id=None, duplicate_of=verdict.duplicate_of,
            memory=verdict.memory, memory_key=verdict.key, **extra,
        )
        if proposer is not None:
            proposer.observe(change, Outcome("REJECTED", None, verdict.reason, verdict.duplicate_of))

    def _begin_integration(self, reason: str) -> None:
        winners = integration.branch_winners(self.tree, self.config)
        self._record_search_stopped(reason)
        if not self.config.integration.enabled or len(winners) < 2:
            why = "integration disabled" if not self.config.integration.enabled else (
                f"{len(winners)} branch winner(s): nothing to combine"
            )
            self._finish(f"search stopped ({reason}); {why}")
            return
        self.tree.record("phase_changed", phase=Phase.INTEGRATION.value, winners=winners)

    def _integration_step(self) -> None:
        winners = self.tree.winners
        if any(n.origin == "integration" for n in self.tree.open_nodes()):
            return
        budget = self.config.integration.max_trials
        used = self.tree.trials_spent(integration=True)
        while integration.grafts_tried(self.tree) < len(winners) - 1:
            if used >= budget:
                self._finish(f"integration trial budget reached ({used} of {budget})")
                return
            combination = self.tree.nodes[integration.current_combination(self.tree, winners)]
            graft = integration.plan_graft(self.tree, combination, winners[integration.grafts_tried(self.tree) + 1])
            if graft.change is None:
                self.tree.record(
                    "proposal", proposal_id=self.tree.next_proposal_id(), parent_id=combination.node_id,
                    change=Change(kind="code", aspect="integration", hypothesis=f"graft {graft.winner_id}",
                                  proposer=integration.PROPOSER, source_id=graft.winner_id).to_dict(),
                    verdict="rejected", reason=graft.reason, node_id=None, duplicate_of=None,
                )
                continue
            if self._admit(combination, graft.change, None) is not None:
                return
        final = integration.current_combination(self.tree, winners)
        gain = policy.estimate_vs_root(self.tree, final, self.config)
        self.tree.record("incumbent_changed", node_id=final, gain=gain)
        self._finish(f"integration done: {final} is the final combination")

    # ----- the wall-clock budget ---------------------------------------------------------
    def _wall_spent(self) -> bool:
        """The search's wall-clock budget is spent: no trial of the baseline or the search starts."""
        if self.tree.phase not in (Phase.BASELINE, Phase.SEARCH):
            return False
        return self.tree.elapsed_s(self._clock()) >= self.config.budget.max_wall_s

    def stop_overdue(self) -> list[str]:
        """Stop the trials still running `budget.grace_s` after the wall-clock budget was spent.

        Each is recorded as finished, STOPPED, with a message that says why: the budget stopped
        it, not its change, so it fails no node and feeds no comparison. The worker running it
        learns it from should_stop() and stops its processes; its late report is ignored.
        """
        if not self._in_flight or not self._wall_spent():
            return []
        budget = self.config.budget
        over = self.tree.elapsed_s(self._clock()) - budget.max_wall_s
        if over < budget.grace_s:
            return []
        now = self._clock()
        stopped = sorted(self._in_flight)
        for trial_id in stopped:
            record = self.tree.trials[trial_id]
            result = TrialResult(
                trial_id=trial_id, node_id=record.node_id, seed=record.seed, state=TrialState.STOPPED,
                started_at=record.started_ts, finished_at=now,
                message=(f"stopped by the campaign: still running {budget.grace_s:g} s (budget.grace_s) after the "
                         f"wall-clock budget of {budget.max_wall_s:g} s (budget.max_wall_s) was spent; not a "
                         "failure of the change"),
            )
            self.tree.record("trial_finished", result=result.to_dict())
            # A report that still comes for it is a retry of one taken: ignored, and not journaled.
            self._reported[trial_id] = self._in_flight.pop(trial_id)
            self._stopped.add(trial_id)
        return stopped

    def should_stop(self, trial_id: str) -> bool:
        """Whether the worker running `trial_id` should stop it now (the budget stopped it)."""
        self.stop_overdue()
        return trial_id in self._stopped

    def _cut_by_budget(self, node: Node) -> bool:
        """A trial of the node, or a control of its parent on its seeds, was stopped by the budget."""
        trial_ids = [trial_id_for(node.node_id, seed) for seed in node.seeds]
        if node.parent_id is not None:
            trial_ids += [trial_id_for(node.parent_id, seed) for seed in node.seeds]
        return any(
            (record := self.tree.trials.get(t)) is not None and record.state is TrialState.STOPPED for t in trial_ids
        )

    def _baseline_out_of_time(self) -> bool:
        """End a campaign whose wall-clock budget ran out before its baseline was measured."""
        if self.running or not self._wall_spent():
            return False
        reason = f"wall-clock budget reached ({self.config.budget.max_wall_s:.0f} s) before the baseline was measured"
        self.tree.record(
            "decision", node_id=ROOT_ID, status=NodeStatus.UNDECIDED.value,
            reason=f"still being measured when the search stopped ({reason})", evidence={},
        )
        self._record_search_stopped(reason)
        self._finish(reason)
        return True

    def _record_search_stopped(self, reason: str) -> None:
        budget = self.config.budget
        self.tree.record(
            "search_stopped", reason=reason, elapsed_s=round(self.tree.elapsed_s(self._clock()), 3),
            wall_spent_at=self.tree.moment_at(budget.max_wall_s, self._clock()),
            stopped_trials=sorted(r.trial_id for r in self.tree.trials.values() if r.state is TrialState.STOPPED),
        )

    def _finish(self, reason: str) -> None:
        self.tree.record("campaign_finished", reason=reason)
        if self._on_finish is not None:
            self._on_finish()

    # ----- trials in and out -------------------------------------------------------------
    def next_trial(self) -> Dispatch | str | None:
        """The next trial to run (marked started, with a fresh token), None to wait, or FINISHED."""
        self._advance()
        if self.tree.phase is Phase.DONE:
            return FINISHED if not self.running else None
        for record in self.tree.pending_trials():
            if self.tree.phase is Phase.SEARCH and self._search_budget_left() <= 0:
                return None
            if self._wall_spent():
                return None  # no trial starts once the wall-clock budget is spent
            self.tree.record("trial_started", trial_id=record.trial_id, node_id=record.node_id, seed=record.seed)
            # Not journaled: a trial in flight at a stop is dispatched again, with a new token.
            token = self._in_flight[record.trial_id] = new_token()
            return Dispatch(record, token)
        return None

    def record_result(
        self, trial_id: str, token: str, result: dict[str, Any] | None, error: bool = False,
        placement: object = None,
    ) -> bool:
        """Record a trial's result; a trial with no result was lost and runs again.

        `placement` says where a lost trial ran (a Placement's fields), when the cluster knows.

        Only a trial dispatched in this session, reported with its token, is recorded (True);
        anything else changes nothing and is journaled as a note (False).
        """
        refusal = self._refusal(trial_id, token)
        if refusal is not None:
            if refusal:
                self._refuse(trial_id, refusal)
            return False
        del self._in_flight[trial_id]
        self._reported[trial_id] = token
        record = self.tree.trials[trial_id]
        if result is not None:
            required = [self.config.objective, *self.config.guards]
            problems = result_problems(result, record, required)
            if problems:
                result = self._insane(record, result, problems)
            self.tree.record("trial_finished", result=result)
            self._watch_drift(record)
        elif record.attempts >= MAX_LOST:
            failed = TrialResult(
                trial_id=trial_id, node_id=record.node_id, seed=record.seed, state=TrialState.FAIL,
                failure_stage=FailureStage.SETUP, finished_at=self._clock(),
                message=f"the trial's worker was lost {record.attempts} times (Ray error); check the cluster",
                placement=Placement.from_dict(lost_placement(placement)),
            )
            self.tree.record("trial_finished", result=failed.to_dict())
        else:
            where = lost_placement(placement)
            self.tree.record("trial_lost", trial_id=trial_id, reason="worker lost" if error else "no result",
                             **({"placement": where} if where else {}))
        self._advance()
        return True

    def _watch_drift(self, record: TrialRecord) -> None:
        """A control finished: journal drift when the node's controls have moved (orchestrator/drift.py)."""
        node = self.tree.nodes[record.node_id]
        if record.state is not TrialState.COMPLETE or (node.node_id != ROOT_ID and not node.children):
            return
        finding = drift.detect(self.tree, self.config, node.node_id)
        if finding is not None:
            self.tree.record("drift_detected", **finding.to_dict())

    def _refusal(self, trial_id: object, token: object) -> str | None:
        """Why a report cannot be taken; "" for a retry of a report already taken; None to take it."""
        if not isinstance(trial_id, str) or trial_id not in self.tree.trials:
            return "no such trial in this campaign"
        expected = self._in_flight.get(trial_id)
        if expected is not None:
            return None if token_matches(expected, token) else "the token does not match its dispatch"
        if trial_id in self._reported and token_matches(self._reported[trial_id], token):
            return ""  # Ray retried a call that had got through: the report is in already
        if self.tree.trials[trial_id].state.is_finished():
            return "it has finished already"
        return "it is not running in this session (never dispatched, or dispatched before a restart)"

    def _refuse(self, trial_id: object, why: str) -> None:
        self._refusals += 1
        if self._refusals > MAX_REFUSAL_NOTES:
            return
        message = f"refused a result for trial {shown(trial_id)}: {why}; nothing was recorded for it"
        if self._refusals == MAX_REFUSAL_NOTES:
            message += f" ({MAX_REFUSAL_NOTES} refusals in this session: further ones are not journaled)"
        self.tree.record("note", message=message)

    def _insane(self, record: TrialRecord, result: object, problems: list[str]) -> dict[str, Any]:
        """What is recorded in place of a result unfit for the ledger: a failure naming its faults."""
        log_tail = result.get("log_tail") if isinstance(result, dict) else None
        return TrialResult(
            trial_id=record.trial_id, node_id=record.node_id, seed=record.seed, state=TrialState.FAIL,
            failure_stage=FailureStage.METRICS, finished_at=self._clock(),
            log_tail=log_tail if isinstance(log_tail, str) else "",
            message=(f"the reported result was malformed, so it was not recorded: {'; '.join(problems)}. "
                     "arborist's trial runner never reports such a result: look for another process "
                     "holding the trial's dispatch token, or report a runner bug"),
        ).to_dict()

    def release_in_flight(self) -> None:
        """The campaign stops: trials handed out and not reported will run again on resume."""
        for trial_id in sorted(self._in_flight):
            self.tree.record("trial_lost", trial_id=trial_id, reason="campaign stopped while it ran")
        self._in_flight.clear()

    @property
    def running(self) -> int:
        """Trials dispatched and not yet reported."""
        return self.tree.trials_running()

    def progress(self) -> dict[str, Any]:
        tree = self.tree
        incumbent = tree.nodes.get(tree.incumbent_id or "")
        return {
            "name": self.config.name,
            "phase": tree.phase.value,
            "finished_reason": tree.finished_reason,
            "running": tree.trials_running(),
            "counts": tree.counts(),
            "trials_spent": tree.trials_spent(),
            "max_trials": self.config.budget.max_trials,
            "integration_spent": tree.trials_spent(integration=True),
            "integration_max": self.config.integration.max_trials,
            "elapsed_s": tree.elapsed_s(self._clock()),
            "max_wall_s": self.config.budget.max_wall_s,
            "incumbent": None if incumbent is None else {
                "node_id": incumbent.node_id,
                "change": incumbent.change.describe() if incumbent.change else "baseline",
                "gain": policy.estimate_vs_root(tree, incumbent.node_id, self.config),
            },
            "proposals": len(tree.proposals),
            "llm_calls": tree.llm_calls,
            "llm_usd": round(tree.llm_usd, 6),
            "max_llm_usd": self.config.budget.max_llm_usd,
            "sessions": len(tree.sessions),
        }



def _history_row(node: Node) -> tuple[Change, float | None] | None:
    """A decided change and its gain, as ProposalContext.history holds them (the baseline: none)."""
    if node.change is None:
        return None
    return node.change, (node.decision or {}).get("evidence", {}).get("mean")


Row = TypeVar("Row")


class DecidedRows(Generic[Row]):
    """One row per decided node, oldest decision first, kept up to date from the tree's decision
    log and the nodes it touched since the last read, instead of rebuilt from every node.

    A node decided again (a person's verdict on a suspect one) moves to the end, as in
    `SearchTree.decided`: the rows are rebuilt then.
    """

    def __init__(self, tree: SearchTree, row: Callable[[Node], Row | None]) -> None:
        self._tree = tree
        self._row = row
        self._rows: list[Row] = []
        self._at: dict[str, int] = {}  # node -> its row's index
        self._decisions = 0  # entries of tree.decision_log read
        self._touched = 0  # entries of tree.touched read

    def rows(self) -> list[Row]:
        tree = self._tree
        fresh = tree.decision_log[self._decisions:]
        touched = tree.touched[self._touched:]
        self._decisions, self._touched = len(tree.decision_log), len(tree.touched)
        if len(set(fresh)) < len(fresh) or any(node_id in self._at for node_id in fresh):
            self._rows, self._at = [], {}
            fresh = list(tree.decided)
        for node_id in fresh:
            row = self._row(tree.nodes[node_id])
            if row is not None:
                self._at[node_id] = len(self._rows)
                self._rows.append(row)
        for node_id in set(touched):
            at = self._at.get(node_id)
            if at is not None:
                row = self._row(tree.nodes[node_id])
                if row is not None:
                    self._rows[at] = row
        return list(self._rows)
