"""LLM proposers end to end without Ray: real git, real trials, litellm over HTTP to a scripted
OpenAI-compatible server on loopback. The drafting service runs in-process (its own thread)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from orchestrator import report
from orchestrator.campaign import prepare
from orchestrator.config import CampaignConfig, load_config
from orchestrator.proposers.service import DraftService
from orchestrator.search import FINISHED, SearchService
from orchestrator.tree import NodeStatus
from tests.llm_server import ScriptedLLMServer, Step
from tests.toy import NO_WALL_LIMIT_S, bonus_diff, extra_diff, train_diff, write_config
from tests.waiting import BACKSTOP_S, wait_for
from trials.runner import run_trial
from trials.spec import TrialSpec

KEY_ENV = "ARBORIST_TEST_LLM_KEY"
KEY = "sk-test-SENTINEL-4242"


def drive(service: SearchService, limit: int = 400, wait_s: float = BACKSTOP_S) -> int:
    """Run trials one at a time until the campaign finishes, waiting while the LLM drafts."""
    ran, idle_since = 0, time.monotonic()
    while ran < limit:
        dispatch = service.suggest()
        if dispatch == FINISHED:
            return ran
        if dispatch is None:
            assert time.monotonic() - idle_since < wait_s, f"no trial to run for {wait_s:.0f} s: the drafts never came"
            time.sleep(0.05)
            continue
        assert isinstance(dispatch, dict)
        result = run_trial(TrialSpec.from_dict(dispatch["spec"]), service.bundle_bytes)
        assert service.complete(dispatch["spec"]["trial_id"], dispatch["token"], result.to_dict())
        ran, idle_since = ran + 1, time.monotonic()
    raise AssertionError("the campaign did not finish")


def llm_config(
    tmp_path: Path, server: ScriptedLLMServer, proposers: list[dict[str, Any]], **overrides: Any
) -> CampaignConfig:
    llm = {
        "model": "openai/scripted", "api_base": server.url, "api_key_env": KEY_ENV,
        "max_retries": 1, "backoff_s": 0.0, "timeout_s": 10,
        "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
    }
    llm.update(overrides.pop("llm", {}))
    path = write_config(
        tmp_path, search={"proposers": proposers, "max_children": 10}, llm=llm,
        task="A toy model: the score rises with model.BONUS and features.EXTRA.", **overrides,
    )
    return load_config(path)


def start(config: CampaignConfig) -> tuple[SearchService, DraftService]:
    data = config.model_dump(mode="json")
    setup = prepare(config, None)
    drafts = DraftService(data)
    return SearchService(data, setup, drafts=drafts), drafts


def reply(*proposals: dict[str, Any]) -> str:
    return json.dumps({"proposals": list(proposals)})


def code(aspect: str, hypothesis: str, diff: str, files: list[str] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"aspect": aspect, "hypothesis": hypothesis, "diff": diff, "claim": claim_of(diff)}
    if files is not None:
        item["files"] = files
    return item


def claim_of(diff: str) -> dict[str, Any]:
    """The claim an LLM states with a diff of the toy project: the knob it sets, from and to."""
    knob = re.search(r"^\+\s*(BONUS|EXTRA)\s*=\s*([0-9.]+)", diff, re.MULTILINE)
    if knob is None:
        return {"knob": "train_script", "direction": "replace", "scope": "train.py"}
    return {"knob": knob.group(1).lower(), "from": 0.0, "to": float(knob.group(2)), "direction": "up"}


PROTECTED = ("diff --git a/evaluate.py b/evaluate.py\n--- a/evaluate.py\n+++ b/evaluate.py\n"
             "@@ -1,2 +1,2 @@\n \n-# Evaluation (DO NOT CHANGE)\n+# Evaluation (changed)\n")
STALE = extra_diff("0.1").replace(" # the features' one knob\n", " # a line that is not there\n")
# The bonus change again, written differently: a comment and other spacing.
BONUS_AGAIN = ("diff --git a/model.py b/model.py\n--- a/model.py\n+++ b/model.py\n@@ -1,2 +1,2 @@\n"
               " # the model's one knob\n-BONUS = 0.0\n+BONUS   =   0.2  # stronger\n")
LEAK = train_diff("params = json.load", "print(sorted(os.environ.items()))\nparams = json.load")


def test_code_proposer_validates_repairs_and_links_the_same_change_again(
    tmp_path: Path, llm_server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    llm_server.script(
        Step(content=reply(
            code("architecture", "raise the model bonus to 0.2", bonus_diff("0.2"), ["model.py"]),
            code("data", "add an extra feature worth 0.1", STALE),
            code("loss", "relax the evaluator", PROTECTED),
            code("other", "log the environment for debugging", LEAK),
        ), prompt_tokens=1000, completion_tokens=400),
        # The repair round: the stale diff fixed, the protected one sent again as it was.
        Step(content=reply(
            code("data", "add an extra feature worth 0.1", extra_diff("0.1")),
            code("loss", "relax the evaluator", PROTECTED),
        )),
        Step(content=reply(
            code("architecture", "make the model bonus 0.2 instead of 0", BONUS_AGAIN),
            code("optimizer+loss", "two things at once", bonus_diff("0.3")),
        )),
    )
    llm_server.default = Step(content=reply())
    config = llm_config(tmp_path, llm_server, [{"type": "llm_code", "k": 4, "max_repairs": 1}, {"type": "grid"}])
    service, drafts = start(config)
    drive(service)
    service.close()
    drafts.close()

    tree = report.load_tree(config)
    by_hypothesis = {n.change.hypothesis: n for n in tree.nodes.values() if n.change is not None}
    assert by_hypothesis["raise the model bonus to 0.2"].status is NodeStatus.PROMOTED
    assert "add an extra feature worth 0.1" in by_hypothesis  # repaired, then accepted
    rejected = {p.change.hypothesis: p for p in tree.proposals if p.verdict == "rejected"}
    assert "protected path evaluate.py" in rejected["relax the evaluator"].reason
    assert "repair" in rejected["relax the evaluator"].reason
    assert "several aspects" in rejected["two things at once"].reason
    # The bonus change again (the same edit once formatting is set aside): a repeat where it was
    # tried or already is, a revisit linked to the first on another branch.
    again = next(p for p in tree.proposals if p.change.hypothesis == "make the model bonus 0.2 instead of 0")
    first = next(p for p in tree.proposals if p.change.hypothesis == "raise the model bonus to 0.2")
    assert again.memory["earlier"] == first.proposal_id and again.memory["level"] == "exact"
    here = again.parent_id == first.parent_id or first.node_id in tree.nodes[again.parent_id].chain
    assert (again.memory["kind"], again.verdict) == (("repeat", "rejected") if here else ("revisit", "accepted"))

    # The prompts: the task, the files, and (after the first call) the tree's history and rejections.
    chats = [r for r in llm_server.requests if r["path"].endswith("/chat/completions")]
    prompts = [json.dumps(r["body"]["messages"]) for r in chats]
    assert "score rises with model.BONUS" in prompts[0] and "BONUS = 0.0" in prompts[0]
    assert "evaluate.py" not in prompts[0].split("Files of the parent node")[1]  # protected files not shown
    assert "does not apply" in prompts[1]  # the repair round says why
    later = [p for p in prompts[2:] if "PROMOTED" in p]
    assert later and any("two things at once" in p and "several aspects" in p for p in prompts[3:])

    # Every call is in the ledger with its tokens and cost; the spend is their sum.
    ledger = Path(config.campaign_dir or "") / "ledger"
    calls = duckdb.connect().execute(
        f"select count(*), sum(prompt_tokens), sum(cost_usd) from '{ledger}/llm_calls/*.parquet'"
    ).fetchone()
    assert calls is not None and calls[0] == tree.llm_calls >= 3
    assert calls[1] >= 1000 and calls[2] == pytest.approx(tree.llm_usd)
    summary = report.summary(config, tree)
    mine = summary["proposers"]["llm_code"]
    assert mine["repeats"] + mine["revisits"] >= 1

    # The key never lands anywhere: ledger, journal, report, trial logs and outputs.
    (Path(config.campaign_dir or "") / "report.md").write_text(report.notebook(config, tree))
    for path in Path(config.campaign_dir or "").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"
    leak = by_hypothesis["log the environment for debugging"]
    assert leak.status is not NodeStatus.OPEN  # it ran, and its printed environment held no key


def test_spend_cap_stops_llm_proposals_cleanly(
    tmp_path: Path, llm_server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    # A reply costs about $0.002 (its prompt, counted, plus 500 completion tokens at $2e-6); the
    # cap allows one call and part of a second, which must be cut short or not made.
    llm_server.default = Step(
        content=reply(code("architecture", "raise the model bonus to 0.2", bonus_diff("0.2"))),
        completion_tokens=500,
    )
    config = llm_config(
        tmp_path, llm_server, [{"type": "llm_code", "max_repairs": 0}, {"type": "grid"}],
        budget={"max_trials": 40, "max_wall_s": NO_WALL_LIMIT_S, "max_llm_usd": 0.003},
    )
    service, drafts = start(config)
    drive(service)
    service.close()
    drafts.close()
    tree = report.load_tree(config)
    assert tree.llm_usd <= 0.003
    notes = [e.data["message"] for e in service.ledger.load_events() if e.type == "note"]
    assert any("spend cap" in m for m in notes), notes
    assert tree.finished_reason  # the campaign ended on its own terms
    assert any(n.change is not None and n.change.proposer == "grid" for n in tree.nodes.values())


def test_provider_down_leaves_the_campaign_running(
    tmp_path: Path, llm_server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    llm_server.default = Step(status=500)
    config = llm_config(tmp_path, llm_server, [{"type": "llm_code"}, {"type": "grid"}])
    service, drafts = start(config)
    drive(service)
    service.close()
    drafts.close()
    tree = report.load_tree(config)
    notes = [e.data["message"] for e in service.ledger.load_events() if e.type == "note"]
    assert any("LLM unavailable" in m for m in notes)
    assert any("failed 5 requests in a row" in m for m in notes)
    assert tree.llm_calls >= 5 and all(not r["ok"] for r in _llm_rows(config))
    assert any(n.change is not None and n.change.proposer == "grid" for n in tree.nodes.values())


def test_llm_params_proposer_stays_in_the_declared_space(
    tmp_path: Path, llm_server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    llm_server.script(
        Step(content=json.dumps({"proposals": [
            {"param": "x", "value": 9.5, "hypothesis": "far beyond the range"},
            {"param": "y", "value": 1, "hypothesis": "a parameter that does not exist"},
            {"param": "x", "value": 3.0, "hypothesis": "the score peaks near x = 3"},
        ]})),
        Step(content="this is not JSON at all"),
    )
    llm_server.default = Step(content=reply())
    config = llm_config(tmp_path, llm_server, [{"type": "llm_params", "max_repairs": 1}])
    service, drafts = start(config)
    drive(service)
    service.close()
    drafts.close()
    tree = report.load_tree(config)
    accepted = [n for n in tree.nodes.values() if n.change is not None and n.origin == "search"]
    assert [n.change.params for n in accepted if n.change] == [{"x": 3.0}]
    assert accepted[0].status is NodeStatus.PROMOTED
    rejected = {p.change.hypothesis: p.reason for p in tree.proposals if p.verdict == "rejected"}
    assert "outside [0, 6]" in rejected["far beyond the range"]
    assert "not declared" in rejected["a parameter that does not exist"]
    prompt = json.dumps(llm_server.requests[0]["body"]["messages"])
    assert "x: float in [0, 6]" in prompt and "worst to best" in prompt
    notes = [e.data["message"] for e in service.ledger.load_events() if e.type == "note"]
    assert any("malformed LLM reply" in m for m in notes)


def _llm_rows(config: CampaignConfig) -> list[dict[str, Any]]:
    ledger = Path(config.campaign_dir or "") / "ledger"
    cursor = duckdb.connect().execute(f"select * from '{ledger}/llm_calls/*.parquet'")
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_hybrid_escalates_to_code_when_params_stall_and_falls_back(
    tmp_path: Path, llm_server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cluster.tune import make_suggester  # Optuna through Ray Tune's OptunaSearch; no Ray cluster needed

    monkeypatch.setenv(KEY_ENV, KEY)
    # Diffs that never apply: the code side keeps failing, so the hybrid falls back to params.
    llm_server.default = Step(content=reply(code("data", "add an extra feature worth 0.1", STALE)))
    config = llm_config(
        tmp_path, llm_server,
        [{"type": "hybrid", "stall_after": 2, "fallback_after": 2, "max_repairs": 0, "k": 1}],
        # Values of x so close that no change can matter: the params search stalls.
        params={"x": {"type": "choice", "values": [1.0, 0.999, 1.001, 0.998, 1.002, 0.997], "default": 1.0}},
        memory={"param_tolerance": 0.0},
        budget={"max_trials": 45, "max_wall_s": NO_WALL_LIMIT_S},
    )
    data = config.model_dump(mode="json")
    drafts = DraftService(data)  # before the campaign folder exists: it finds the repository when drafting
    service = SearchService(data, prepare(config, None), make_suggester, drafts=drafts)
    drive(service)
    service.close()
    drafts.close()
    events = service.ledger.load_events()
    switches = [e.data for e in events if e.type == "proposer_switched"]
    assert switches[0]["mode"] == "code" and "stalled" in switches[0]["reason"]
    assert switches[1]["mode"] == "params" and "failed to apply or to run" in switches[1]["reason"]
    tree = report.load_tree(config)
    assert tree.proposer_modes["hybrid"] == switches[-1]["mode"]
    assert "switched from params to code" in report.notebook(config, tree)


def test_every_rejected_item_of_a_full_batch_is_in_the_ledger(
    tmp_path: Path, llm_server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With k=1 the first valid item fills the batch; the others are never sent back for repair,
    # and must still be journaled as rejected proposals with their reasons.
    monkeypatch.setenv(KEY_ENV, KEY)
    oversized = bonus_diff("0.2").replace("+BONUS = 0.2\n", "+BONUS = 0.2  # " + "x" * 300_000 + "\n")
    llm_server.script(Step(content=reply(
        code("architecture", "raise the model bonus to 0.2", bonus_diff("0.2")),
        code("loss", "relax the evaluator", PROTECTED),
        code("architecture", "a very long comment", oversized),
    )))
    llm_server.default = Step(content=reply())
    config = llm_config(tmp_path, llm_server, [{"type": "llm_code", "k": 1, "max_repairs": 1}])
    service, drafts = start(config)
    rejected: dict[str, str] = {}

    def both_rejected() -> bool:
        nonlocal rejected
        rejected = {e.data["change"]["hypothesis"]: e.data["reason"] for e in service.ledger.load_events()
                    if e.type == "proposal" and e.data["verdict"] == "rejected"}
        dispatch = service.suggest()  # the drafting thread answers in the background
        if len(rejected) >= 2 or dispatch == FINISHED:
            return True
        if isinstance(dispatch, dict):
            spec = TrialSpec.from_dict(dispatch["spec"])
            assert service.complete(spec.trial_id, dispatch["token"], run_trial(spec, service.bundle_bytes).to_dict())
        return False

    wait_for(both_rejected, "both invalid items of the batch journaled as rejected", seen=lambda: rejected,
             every_s=0.05)
    service.close()
    drafts.close()
    assert rejected["relax the evaluator"] == (
        "not sent for repair, the batch held its 1 valid proposal(s) without it: touches protected path "
        "evaluate.py (protected: evaluate.py); the evaluation code and data are frozen, change the "
        "training code instead"
    )
    assert rejected["a very long comment"].startswith(
        "not sent for repair, the batch held its 1 valid proposal(s) without it: the diff is 300"
    )
    assert "more than limits.max_diff_bytes=200000" in rejected["a very long comment"]
    chats = [r for r in llm_server.requests if r["path"].endswith("/chat/completions")]
    assert len(chats) == 1 or "These proposals were rejected" not in json.dumps(chats[1]["body"])
