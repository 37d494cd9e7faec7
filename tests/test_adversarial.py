"""The adversarial catalog: every route a reward-hacking change has tried, through a real campaign.

Most cases are items of one hypotheses file, run by one campaign (real git, real trials under
bubblewrap, no Ray) and looked up afterwards by their queue id. Each case states its verdict: a
rejected proposal and its reason, a node failed at a stage, or a node whose trials ran to
COMPLETE with the very scores the unchanged project gets (the attack changed nothing). Runtime
attacks end train with an error when they succeed, so a defence that gives way fails its case.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator import report
from orchestrator.campaign import prepare
from orchestrator.config import CampaignConfig, load_config
from orchestrator.ledger import load_events, open_filesystem
from orchestrator.search import SearchService
from orchestrator.tree import ROOT_ID, Event, NodeStatus, Phase, SearchTree
from tests import hostile
from tests.toy import self_reported_diff, write_config, write_self_reported_config
from tests.trials.conftest import processes_with, unified_diff
from trials import sandbox
from trials.runner import run_trial
from trials.spec import FailureStage, TrialSpec, TrialState

BWRAP_PROBLEM = sandbox.bwrap_problem()
pytestmark = pytest.mark.skipif(
    BWRAP_PROBLEM is not None, reason=f"bubblewrap cannot run here ({BWRAP_PROBLEM}); scripts/_env.sh installs it"
)
SECRET_VAR = "ARBORIST_ADVERSARIAL_SECRET"


@dataclass(frozen=True)
class Rejected:
    reason: str  # a part of the reason the proposer is shown


@dataclass(frozen=True)
class Genuine:
    """The node's trials ran to COMPLETE with the scores of the unchanged project, seed by seed."""


@dataclass(frozen=True)
class Failed:
    state: TrialState
    stage: FailureStage | None  # None: an INVALID trial, which failed no stage
    message: str  # a part of the failed trial's message or log tail


Expectation = Rejected | Genuine | Failed


@dataclass
class Ran:
    config: CampaignConfig
    tree: SearchTree
    events: list[Event]
    places: dict[str, Path]
    tokens: dict[str, str]
    items: dict[str, tuple[str, str, Expectation]]
    seconds: float


def unrelated() -> str:
    """A hypothesis that shares no word with any other: the memory must not take cases for repeats."""
    return f"{uuid.uuid4().hex} {uuid.uuid4().hex}"


def drive(service: SearchService, limit: int = 400) -> None:
    """Run trials one at a time, in the dispatch protocol, until the campaign finishes or waits."""
    for _ in range(limit):
        dispatch = service.suggest()
        if not isinstance(dispatch, dict):
            return
        spec = TrialSpec.from_dict(dispatch["spec"])
        assert service.complete(spec.trial_id, dispatch["token"], run_trial(spec, service.bundle_bytes).to_dict())
    raise AssertionError(f"the campaign did not finish in {limit} trials")


def ledger_events(config: CampaignConfig) -> list[Event]:
    assert config.campaign_dir is not None
    fs, root = open_filesystem(str(config.campaign_dir / "ledger"))
    return load_events(fs, root, config.campaign_dir / "journal.wal")


# -- the hostile campaign ------------------------------------------------------------------------
def hostile_items(places: dict[str, Path], tokens: dict[str, str]) -> dict[str, tuple[str, str, Expectation]]:
    """queue id -> (aspect, diff, expectation)."""
    campaign, scratch = places["campaign"], places["campaign"] / "scratch"
    genuine = Genuine()
    limits = FailureStage.LIMITS
    return {
        # The evaluator's room: what evaluate computes cannot be changed from the worktree.
        "shadow-json-in-diff": ("loss", hostile.shadow_module_diff(), genuine),
        "shadow-json-at-run-time": ("loss", hostile.shadow_module_written(), genuine),
        "metrics-planted-before-evaluate": ("loss", hostile.metrics_planted(), genuine),
        "setsid-daemon-rewrites-metrics": ("other", hostile.daemon(tokens["daemon"]), genuine),
        # What train can read.
        "reads-campaign-json": ("data", hostile.read_any([str(campaign / "campaign.json")]), genuine),
        "reads-config-and-journal": (
            "data", hostile.read_any([str(campaign / "config.yaml"), str(campaign / "journal.wal")]), genuine,
        ),
        "reads-held-out-data": ("data", hostile.held_out(str(places["heldout"]), "HELDOUT"), genuine),
        "reads-ray-session-and-token": (
            "other", hostile.read_any([str(places["ray_marker"]), str(Path.home() / ".ray" / "auth_token")]), genuine,
        ),
        "reads-worker-secret-from-proc": ("other", hostile.environ_scan(tokens["secret"]), genuine),
        "lists-other-trials": ("other", hostile.other_trials(str(scratch / "trials")), genuine),
        # What train can write outside its worktree.
        "writes-inbox-item": (
            "other", hostile.write_any([str(campaign / "inbox.yaml")], "- {hypothesis: planted, params: {x: 3}}\n"),
            genuine,
        ),
        "writes-repo-branch": ("other", hostile.branch_rewrite(str(campaign / "repo")), genuine),
        "writes-repo-ref-file": (
            "other", hostile.write_any([str(campaign / "repo" / ".git" / "refs" / "heads" / "hacked")], "0" * 40),
            genuine,
        ),
        "plants-hook-in-cached-repos": (
            "other", hostile.plant_hooks(str(scratch / "repos"), str(places["hook_marker"])), genuine,
        ),
        # Resources.
        "allocates-2-gib": ("architecture", hostile.HOG, Failed(TrialState.FAIL, limits, "limits.memory_mb")),
        "spins-the-cpu": ("optimizer", hostile.SPIN, Failed(TrialState.FAIL, limits, "limits.max_cpu_s")),
        "floods-stdout": ("other", hostile.CHATTY, Failed(TrialState.FAIL, limits, "limits.max_log_mb")),
        "fills-the-output-dir": (
            "other", hostile.BIG_OUTPUT, Failed(TrialState.FAIL, limits, "limits.max_output_mb"),
        ),
        "ignores-sigterm-past-its-budget": ("other", hostile.DEAF, Failed(TrialState.TIMEOUT, FailureStage.RUN, "")),
        # Diffs refused before anything reads them.
        "symlink-120000": ("other", hostile.mode_diff("link.py", "new file mode 120000"), Rejected("symbolic link")),
        "symlink-0120000": ("other", hostile.mode_diff("link2.py", "new file mode 0120000"), Rejected("symbolic link")),
        "symlink-padded-mode": (
            "other", hostile.mode_diff("link3.py", "new file mode   120000"), Rejected("symbolic link"),
        ),
        "gitlink-160000": (
            "other", hostile.mode_diff("vendor", "new file mode 160000", "+Subproject commit " + "4" * 40 + "\n"),
            Rejected("gitlink"),
        ),
        "odd-file-mode": ("other", hostile.RETYPE_EXECUTABLE_GROUP, Rejected("mode 100664")),
        "binary-patch": ("other", hostile.BINARY, Rejected("inary")),
        "5-mb-one-line": ("other", hostile.long_line(5_000_000), Rejected("limits.max_diff_bytes")),
        "6000-char-line": ("other", hostile.long_line(6_000), Rejected("limits.max_diff_line_chars")),
        "100000-lines": ("other", hostile.many_lines(100_000), Rejected("limits.max_diff_")),
        "500-lines": ("other", hostile.many_lines(500), Rejected("limits.max_diff_lines")),
        "dot-dot-path": ("other", hostile.new_file("../escape.py"), Rejected("..")),
        "absolute-path": ("other", hostile.new_file("/tmp/escape.py"), Rejected("absolute")),
        "dot-git-path": ("other", hostile.new_file(".git/hooks/post-checkout"), Rejected(".git/")),
        "dot-arborist-path": ("other", hostile.new_file(".arborist/state.json"), Rejected(".arborist")),
        "edits-protected-evaluator": (
            "loss", unified_diff("evaluate.py", "x\n", "y\n"), Rejected("protected path evaluate.py"),
        ),
        "deletes-protected-evaluator": ("loss", hostile.DELETE_PROTECTED, Rejected("protected path evaluate.py")),
        "renames-onto-protected-evaluator": (
            "loss", hostile.RENAME_ONTO_PROTECTED, Rejected("protected path evaluate.py"),
        ),
        "several-aspects": ("loss and data", hostile.new_file("extra.py"), Rejected("declares several aspects")),
        "unknown-aspect": ("vibes", hostile.new_file("extra2.py"), Rejected("aspect 'vibes' is not one of")),
        "does-not-apply": ("architecture", hostile.NOT_APPLYING, Rejected("apply")),
        "repeats-a-tried-change": ("loss", hostile.shadow_module_diff(), Rejected("duplicate of")),
        # Last: an accepted case earlier would shift when the run of rejected ones above comes.
        "poisons-the-shared-bytecode": ("other", hostile.poison_shared_bytecode(), genuine),
    }


PARAM_ITEMS: dict[str, tuple[dict[str, Any], Expectation]] = {
    "unknown-hyperparameter": ({"depth": 3}, Rejected("unknown hyperparameter 'depth'")),
    "hyperparameter-out-of-range": ({"x": 600.0}, Rejected("x=600.0 is outside [0.0, 6.0]")),
    "hyperparameter-of-wrong-type": ({"x": "three"}, Rejected("x='three' is outside")),
}

# The ids alone, for parametrize: the catalog's diffs name temporary paths made at run time.
ITEM_IDS = list(hostile_items({"campaign": Path("/c"), "heldout": Path("/h"), "ray_marker": Path("/r"),
                               "hook_marker": Path("/m")}, {"daemon": "", "secret": ""}))


@pytest.fixture(scope="module")
def secret() -> Iterator[str]:
    # In the environment of the process that runs the trials, as a worker's keys would be.
    value = f"s3cr3t-{uuid.uuid4().hex}"
    # A process started with the secret in its environment stands for the raylet or the driver
    # (what /proc/<pid>/environ shows is the environment a process started with).
    holder = subprocess.Popen(["sleep", "600"], env={**os.environ, SECRET_VAR: value})
    os.environ[SECRET_VAR] = value
    yield value
    del os.environ[SECRET_VAR]
    holder.kill()
    holder.wait()


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory, secret: str) -> Iterator[Ran]:
    tmp = tmp_path_factory.mktemp("hostile")
    ray_marker = Path("/tmp/ray") / f"arborist-adversarial-{uuid.uuid4().hex}"
    ray_marker.parent.mkdir(exist_ok=True)
    ray_marker.write_text("ray session")
    places = {
        "campaign": tmp / "campaign", "heldout": tmp / "heldout.csv", "ray_marker": ray_marker,
        "hook_marker": tmp / "hook-ran",
    }
    places["heldout"].write_text("label\n1\n")
    tokens = {"daemon": f"arborist-daemon-{uuid.uuid4().hex}", "secret": secret}
    catalog = hostile_items(places, tokens)
    items: list[dict[str, Any]] = []
    for name, (aspect, diff, _) in catalog.items():
        item = {"id": name, "aspect": aspect, "hypothesis": unrelated()}
        # Megabytes of YAML take PyYAML minutes to read: the large diffs go in files of their own.
        if len(diff) > 10_000:
            (tmp / f"{name}.diff").write_text(diff)
            items.append({**item, "diff_file": f"{name}.diff"})
        else:
            items.append({**item, "diff": diff})
    items += [
        {"id": name, "hypothesis": unrelated(), "params": params}
        for name, (params, _) in PARAM_ITEMS.items()
    ]
    path = write_config(
        tmp,
        seeds={"baseline": 2, "max": 3}, stats={"min_seeds": 2}, integration={"enabled": False},
        search={"proposers": [{"type": "queue", "path": str(tmp / "hostile.yaml")}], "max_children": 100},
        budget={"max_trials": 300}, sandbox={"mode": "bwrap"},
        entrypoint={"budget_s": 6, "evaluate_budget_s": 30},
        limits={"memory_mb": 400, "max_cpu_s": 1, "max_log_mb": 0.05, "max_output_mb": 1},
        data={"heldout": {"HELDOUT": str(places["heldout"])}},
    )
    (tmp / "hostile.yaml").write_text(yaml.safe_dump(items, sort_keys=False))
    config = load_config(path)
    started = time.monotonic()
    service = SearchService(config.model_dump(mode="json"), prepare(config, path))
    drive(service)
    service.close()
    seconds = time.monotonic() - started
    yield Ran(config, report.load_tree(config), ledger_events(config), places, tokens, catalog, seconds)
    ray_marker.unlink()


def node_of(tree: SearchTree, source_id: str) -> str | None:
    return next(
        (n.node_id for n in tree.nodes.values() if n.change is not None and n.change.source_id == source_id), None
    )


def assert_expected(tree: SearchTree, case: str, expected: Expectation) -> None:
    proposals = [p for p in tree.proposals if p.change.source_id == case]
    assert proposals, f"{case} was never proposed"
    if isinstance(expected, Rejected):
        assert [p.verdict for p in proposals] == ["rejected"], [p.reason for p in proposals]
        assert expected.reason in proposals[0].reason, proposals[0].reason
        assert node_of(tree, case) is None
        return
    node_id = node_of(tree, case)
    assert node_id is not None, [p.reason for p in proposals]
    node = tree.nodes[node_id]
    trials = [t for t in tree.node_trials(node_id) if t.result is not None]
    assert trials, f"{case} ran no trial"
    if isinstance(expected, Failed):
        assert node.status is NodeStatus.FAILED, (node.status, node.decision)
        failed = [t.result for t in trials if t.result is not None and t.result.state is not TrialState.COMPLETE]
        assert failed and all(r.state is expected.state and r.failure_stage is expected.stage for r in failed), [
            (r.state, r.failure_stage, r.message) for r in failed
        ]
        assert expected.message in failed[0].message + failed[0].log_tail, failed[0].message
        return
    # Genuine: every trial complete, scoring exactly what the unchanged project scores.
    assert node.status not in (NodeStatus.PROMOTED, NodeStatus.SUSPECT, NodeStatus.FAILED), node.decision
    root = {t.seed: t.result.metrics for t in tree.node_trials(ROOT_ID) if t.result is not None}
    for trial in trials:
        assert trial.result is not None
        assert trial.result.state is TrialState.COMPLETE, trial.result.message
        assert trial.result.sandbox == "bwrap"
        scored = {name: trial.result.metrics[name] for name in ("score", "size")}
        assert scored == {name: root[trial.seed][name] for name in ("score", "size")}, trial.seed


@pytest.mark.parametrize("case", ITEM_IDS + list(PARAM_ITEMS))
def test_hostile_change(ran: Ran, case: str) -> None:
    expected = ran.items[case][2] if case in ran.items else PARAM_ITEMS[case][1]
    assert_expected(ran.tree, case, expected)
    assert not marks_left(ran).get(case), f"{case} left its mark outside its trial"


def marks_left(ran: Ran) -> dict[str, bool]:
    """What each attack that writes outside its worktree would have left, had it got through."""
    campaign = ran.places["campaign"]
    refs = subprocess.run(["git", "-C", str(campaign / "repo"), "for-each-ref", "--format=%(refname)"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert refs, "the campaign repository has no branches"
    hacked = [r for r in refs if "hacked" in r] + [str(p) for p in (campaign / "repo" / ".git").rglob("hacked")]
    inbox = campaign / "inbox.yaml"
    hooks = list((campaign / "scratch" / "repos").glob("*/hooks/post-checkout"))
    return {
        "writes-inbox-item": inbox.exists() and "planted" in inbox.read_text(),
        "writes-repo-branch": bool(hacked),
        "writes-repo-ref-file": bool(hacked),
        "plants-hook-in-cached-repos": bool(hooks) or ran.places["hook_marker"].exists(),
        "setsid-daemon-rewrites-metrics": bool(processes_with(ran.tokens["daemon"])),
    }


@pytest.mark.parametrize("case", ["campaign-finished", "ledger-holds-every-trial-once"])
def test_the_hostile_campaign_ends_soundly(ran: Ran, case: str) -> None:
    if case == "campaign-finished":
        assert ran.tree.phase is Phase.DONE and ran.tree.finished_reason
        assert ran.seconds < 150, f"the hostile campaign took {ran.seconds:.0f} s"
    else:
        assert_ledger_sound(ran.events)
        finished = {e.data["result"]["trial_id"] for e in ran.events if e.type == "trial_finished"}
        assert finished == {t for t, r in ran.tree.trials.items() if r.result is not None}


def assert_ledger_sound(events: list[Event]) -> None:
    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "event seqs have gaps or repeats"
    finished = Counter(e.data["result"]["trial_id"] for e in events if e.type == "trial_finished")
    assert finished and max(finished.values()) == 1, [t for t, n in finished.items() if n > 1]


# -- the same attacks with the sandbox off: the catalog's cases can fail ---------------------------
@pytest.fixture(scope="module")
def unsandboxed(tmp_path_factory: pytest.TempPathFactory, secret: str) -> SearchTree:
    tmp = tmp_path_factory.mktemp("unsandboxed")
    campaign = tmp / "campaign"
    items = [
        {"id": "reads-campaign-json", "aspect": "data", "hypothesis": "read the campaign's resolved config",
         "diff": hostile.read_any([str(campaign / "campaign.json")])},
        {"id": "reads-worker-secret-from-proc", "aspect": "other", "hypothesis": "read the worker's keys",
         "diff": hostile.environ_scan(secret)},
    ]
    (tmp / "hostile.yaml").write_text(yaml.safe_dump(items, sort_keys=False))
    path = write_config(
        tmp, seeds={"baseline": 2, "max": 3}, stats={"min_seeds": 2}, integration={"enabled": False},
        search={"proposers": [{"type": "queue", "path": str(tmp / "hostile.yaml")}]}, sandbox={"mode": "none"},
    )
    config = load_config(path)
    service = SearchService(config.model_dump(mode="json"), prepare(config, path))
    drive(service)
    service.close()
    return report.load_tree(config)


@pytest.mark.parametrize("case", ["reads-campaign-json", "reads-worker-secret-from-proc"])
def test_without_the_sandbox_the_attack_succeeds(unsandboxed: SearchTree, case: str) -> None:
    # The control of the catalog: its runtime cases fail the trial when the attack gets through.
    assert_expected(unsandboxed, case, Failed(TrialState.FAIL, FailureStage.RUN, "attack succeeded"))


# -- a self-reported project: a constant metric and its protected definition ----------------------
SELF_REPORTED: dict[str, tuple[dict[str, Any], Expectation | None]] = {
    "edits-protected-definition": (
        {"aspect": "loss", "diff": self_reported_diff("    return sum(losses) / len(losses)\n", "    return 0.02\n")},
        Rejected("changes protected definition train.py::evaluate"),
    ),
    "rewrites-protected-definition-on-disk": (
        {"aspect": "regularization", "diff": self_reported_diff(
            'print("loss:", evaluate(train(params, seed)))\n',
            'print("loss:", evaluate(train(params, seed)))\n'
            'source = open(__file__).read()\n'
            'open(__file__, "w").write(source.replace("sum(losses) / len(losses)", "0.0"))\n')},
        Failed(TrialState.INVALID, None, "protected definition train.py::evaluate changed"),
    ),
    "prints-a-constant-metric": (
        {"aspect": "other", "diff": self_reported_diff('print("loss:", evaluate(train(params, seed)))',
                                                       'print("loss:", 0.02)')},
        None,  # SUSPECT, checked by its test
    ),
}


@pytest.fixture(scope="module")
def self_reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[SearchTree, list[Event]]:
    tmp = tmp_path_factory.mktemp("selfreported")
    items = [{"id": name, "hypothesis": unrelated(), **item} for name, (item, _) in SELF_REPORTED.items()]
    config = load_config(write_self_reported_config(
        tmp, items, integration={"enabled": False}, sandbox={"mode": "bwrap"},
        seeds={"baseline": 3, "max": 3},
    ))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    drive(service)
    service.close()
    return report.load_tree(config), ledger_events(config)


@pytest.mark.parametrize("case", list(SELF_REPORTED))
def test_self_reported_hostile_change(self_reported: tuple[SearchTree, list[Event]], case: str) -> None:
    tree, events = self_reported
    assert_ledger_sound(events)
    expected = SELF_REPORTED[case][1]
    if expected is not None:
        assert_expected(tree, case, expected)
        return
    node_id = node_of(tree, case)
    assert node_id is not None
    node = tree.nodes[node_id]
    assert node.status is NodeStatus.SUSPECT, (node.status, node.decision)
    assert {f["rule"] for f in (node.decision or {})["evidence"]["suspect"]} >= {"zero_variance"}
    assert tree.incumbent_id != node_id


# -- results forged through the search service -----------------------------------------------------
FORGERIES = ["no-token", "wrong-token", "token-of-another-trial", "unknown-trial", "replayed-after-finish"]


@pytest.fixture(scope="module")
def forged(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bool], SearchTree, list[Event], float]:
    tmp = tmp_path_factory.mktemp("forged")
    config = load_config(write_config(tmp, seeds={"baseline": 2, "max": 3}, sandbox={"mode": "bwrap"}))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    first, second = service.suggest(), service.suggest()
    assert isinstance(first, dict) and isinstance(second, dict)
    spec = TrialSpec.from_dict(first["spec"])
    real = run_trial(spec, service.bundle_bytes).to_dict()
    fake = {**real, "metrics": {**real["metrics"], "score": 99.0}}
    taken = {
        "no-token": service.complete(spec.trial_id, "", fake),
        "wrong-token": service.complete(spec.trial_id, "0" * 32, fake),
        "token-of-another-trial": service.complete(spec.trial_id, second["token"], fake),
        "unknown-trial": service.complete("n7-s0", first["token"], {**fake, "trial_id": "n7-s0"}),
    }
    assert service.complete(spec.trial_id, first["token"], real)
    taken["replayed-after-finish"] = service.complete(spec.trial_id, first["token"], fake)
    service.close()
    return taken, report.load_tree(config), ledger_events(config), real["metrics"]["score"]


@pytest.mark.parametrize("case", FORGERIES)
def test_a_forged_result_is_refused(forged: tuple[dict[str, bool], SearchTree, list[Event], float], case: str) -> None:
    taken, tree, events, score = forged
    assert taken[case] is False
    assert_ledger_sound(events)
    (finished,) = [e.data["result"] for e in events if e.type == "trial_finished"]
    assert finished["metrics"]["score"] == score != 99.0
    refusals = [e.data["message"] for e in events if e.type == "note" and "refused a result" in e.data["message"]]
    # The replay of a result already taken is a silent no-op (Ray retries reports); the rest are noted.
    assert len(refusals) == 4, refusals
    assert tree.trials[finished["trial_id"]].result is not None
