"""Ray Tune: the Searcher bridge to the tree actor, the trial trainable, and the Tuner.

Tune fans trials out across the cluster; what to run and what it means stay with the tree
actor. The bridge works with any actor that has `suggest()` and `complete(trial_id, token,
result, error)`. Each trial's dispatch token stays in the bridge, in the driver: the trainable,
and so the trial's own processes, never see it.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher

from cluster.actors import NAMESPACE
from cluster.runtime import node_placement
from trials.runner import local_placement, run_trial
from trials.spec import TrialSpec

FINISHED = "FINISHED"  # what the tree actor's suggest() returns when the campaign is over
POLL_S = 0.25  # how often Tune may ask a tree actor that had nothing to run
STOP_POLL_S = 2.0  # how often a running trial asks the tree actor whether the campaign stopped it
RESULT_KEY = "arborist_result"
PLACEMENT_KEY = "arborist_placement"  # the trial's first report: where it runs, kept should it be lost


class TreeSearcher(Searcher):
    """A Tune Searcher that asks the tree actor for the next trial and reports results back."""

    def __init__(self, actor_name: str) -> None:
        super().__init__(metric=None, mode=None)
        self._actor_name = actor_name
        self._actor = ray.get_actor(actor_name, namespace=NAMESPACE)
        # Tune's trial id -> arborist's, and its token: a translation, never a count of trials in
        # flight (the tree actor's journal counts those).
        self._dispatched: dict[str, tuple[str, str]] = {}
        self._placements: dict[str, dict[str, Any]] = {}  # Tune's trial id -> where it runs
        self._next_poll = 0.0

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        now = time.monotonic()
        if now < self._next_poll:
            return None  # back-pressure: the tree had nothing a moment ago
        dispatch: Any = ray.get(self._actor.suggest.remote())
        if dispatch == FINISHED:
            return Searcher.FINISHED
        if dispatch is None:
            self._next_poll = now + POLL_S
            return None
        spec = dispatch["spec"]
        self._dispatched[trial_id] = (spec["trial_id"], dispatch["token"])
        return {"spec": spec, "actor": self._actor_name}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        placement = result.get(PLACEMENT_KEY)
        if placement and trial_id in self._dispatched:
            self._placements[trial_id] = json.loads(placement)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        dispatched = self._dispatched.pop(trial_id, None)
        placement = self._placements.pop(trial_id, None)
        if dispatched is None:
            return
        ours, token = dispatched
        payload = (result or {}).get(RESULT_KEY)
        if payload:
            ray.get(self._actor.complete.remote(ours, token, json.loads(payload), error))
        else:  # lost: Tune hands an errored trial's searcher no result, so where it ran comes from its first report
            ray.get(self._actor.complete.remote(ours, token, None, error, placement))
        self._next_poll = 0.0  # a finished trial may have opened new work

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the tree actor's state lives in the ledger."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: a resumed campaign replays the ledger."""


def trial_trainable(config: dict[str, Any], bundles: dict[str, list[Any]] | None = None) -> None:
    """Run one trial on this worker; intermediate ARBORIST_REPORT lines go to Tune's schedulers.

    `bundles` maps the campaign's bundle id to its bytes in Ray's object store (a reference in a
    list, so that Tune does not fetch it for every trial): a worker reads it from there rather
    than from the tree actor, since a handle to the tree actor makes a fresh worker import the
    whole orchestrator (seconds, while the trial holds its slot). The trial's worktree and
    scratch parts are removed in the background once its result is ready, so that the worker's
    next trial, which Tune gives this same actor (reuse_actors), starts at once.
    """
    slot_taken_at = time.time()
    spec = TrialSpec.from_dict(config["spec"])
    actor_name = config["actor"]

    def on_report(payload: dict[str, Any]) -> None:
        numbers = {k: float(v) for k, v in payload.items() if _is_number(v)}
        if numbers:
            tune.report(numbers)

    cluster = node_placement()
    # Reported first, so that a trial whose worker dies is still known to have run here.
    where = replace(local_placement(spec), ray_node_id=cluster.ray_node_id, node_ip=cluster.node_ip,
                    accelerator=cluster.accelerator)
    tune.report({PLACEMENT_KEY: json.dumps(where.to_dict())})
    node = replace(where, gpu_ids="").to_dict()  # the machine, not the trial: the journal says who fetched

    journal: list[threading.Thread] = []

    def fetch_bundle(bundle_id: str) -> bytes:
        if bundles and bundle_id in bundles:
            data = cast(bytes, ray.get(bundles[bundle_id][0]))
            # Journaled while the trial runs: the lookup of the tree actor can take seconds here.
            journal.append(threading.Thread(target=_journal_fetch, args=(actor_name, bundle_id, len(data), node),
                                            daemon=True))
            journal[-1].start()
            return data
        actor = ray.get_actor(actor_name, namespace=NAMESPACE)
        return cast(bytes, ray.get(actor.bundle_bytes.remote(bundle_id, node)))

    stop, done = threading.Event(), threading.Event()
    watcher = threading.Thread(target=_watch_for_stop, args=(actor_name, spec.trial_id, stop, done), daemon=True)
    watcher.start()
    try:
        result = run_trial(spec, fetch_bundle, on_report, stop, placement=cluster, started_at=slot_taken_at,
                           tidy_in_background=True)
    finally:
        done.set()
    for thread in journal:  # done by now, unless the trial was shorter than the lookup
        thread.join(timeout=60)
    tune.report({RESULT_KEY: json.dumps(result.to_dict()), "done": True})


def _watch_for_stop(actor_name: str, trial_id: str, stop: threading.Event, done: threading.Event) -> None:
    """Set `stop` once the tree actor says the campaign stopped the trial (its wall-clock budget ran
    out): run_trial then stops the trial's processes. Asking fails while the actor restarts: the
    next round asks again."""
    actor = None
    while not done.wait(STOP_POLL_S):
        try:
            # Looked up here, not before the trial starts: a fresh worker's first lookup can take seconds.
            actor = actor or ray.get_actor(actor_name, namespace=NAMESPACE)
            if ray.get(actor.should_stop.remote(trial_id), timeout=30):
                stop.set()
                return
        except Exception:
            continue


def _journal_fetch(actor_name: str, bundle_id: str, size: int, node: dict[str, Any]) -> None:
    """Tell the tree actor that this node took the bundle from the object store (`bundle_sent`)."""
    with contextlib.suppress(Exception):  # a journal line lost must not fail the trial
        actor = ray.get_actor(actor_name, namespace=NAMESPACE)
        ray.get(actor.bundle_fetched.remote(bundle_id, size, node), timeout=60)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def build_tuner(
    actor_name: str, *, max_concurrent: int, cpus: float, gpus: float, storage_dir: Path, name: str,
    bundle: tuple[str, bytes] | None = None,
) -> tune.Tuner:
    """`bundle`: the campaign bundle's id and bytes, put in Ray's object store for the workers."""
    searcher = ConcurrencyLimiter(TreeSearcher(actor_name), max_concurrent=max_concurrent)
    bundles = {bundle[0]: [ray.put(bundle[1])]} if bundle is not None else None
    trainable = tune.with_resources(tune.with_parameters(trial_trainable, bundles=bundles), {"cpu": cpus, "gpu": gpus})
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=-1,
            reuse_actors=True,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage_dir),
            verbose=0,
            log_to_file=False,
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False, num_to_keep=1),
        ),
    )


def _trial_name(trial: Any) -> str:
    """Tune's folder and name for a trial: arborist's stable trial id, not the whole config."""
    return str(trial.config.get("spec", {}).get("trial_id", trial.trial_id))


def make_suggester(algorithm: str, param: str, spec: dict[str, Any], seed: int) -> Searcher:
    """A Tune search algorithm over one parameter's domain, maximizing the paired gain."""
    from ray.tune.search.optuna import OptunaSearch

    sampler = None
    if algorithm == "random":
        import optuna

        sampler = optuna.samplers.RandomSampler(seed=seed)
    return OptunaSearch(
        space={param: _domain(spec)}, metric="gain", mode="max",
        sampler=sampler, seed=None if sampler else seed,
    )


def _domain(spec: dict[str, Any]) -> Any:
    if spec["type"] == "choice":
        return tune.choice(spec["values"])
    low, high, log = spec["low"], spec["high"], spec["log"]
    if spec["type"] == "int":
        return tune.lograndint(int(low), int(high) + 1) if log else tune.randint(int(low), int(high) + 1)
    return tune.loguniform(low, high) if log else tune.uniform(low, high)
