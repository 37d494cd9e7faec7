"""Checking LLM drafts before they are queued: the reply's JSON and each proposed diff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.campaign import prepare
from orchestrator.change import Claim
from orchestrator.config import CampaignConfig, load_config
from orchestrator.proposers.diff import CodeDrafter
from orchestrator.proposers.drafting import parse_proposals
from orchestrator.proposers.opro import ParamsDrafter
from tests.toy import bonus_diff, write_config
from trials.worktree import CampaignRepo


@pytest.mark.parametrize(
    ("text", "count", "problem"),
    [
        ('{"proposals": [{"aspect": "loss"}]}', 1, ""),
        ('```json\n{"proposals": [{"aspect": "loss"}, {"aspect": "data"}]}\n```', 2, ""),
        ('[{"aspect": "loss"}]', 1, ""),
        ('{"proposals": []}', 0, ""),
        ("Sure! Here are some ideas: 1. use AdamW", 0, "not valid JSON"),
        ('{"ideas": []}', 0, '{"proposals": [...]}'),
        ('{"proposals": ["use AdamW"]}', 0, "must be a JSON object"),
        ('{"proposals": [{"aspect": "loss"}', 0, "not valid JSON"),  # truncated
    ],
)
def test_parse_proposals(text: str, count: int, problem: str) -> None:
    items, error = parse_proposals(text)
    assert len(items) == count
    assert problem in error if problem else error == ""


@pytest.fixture
def drafter(tmp_path: Path) -> tuple[CodeDrafter, str, CampaignConfig]:
    config = load_config(write_config(
        tmp_path, editable=["*.py"], limits={"max_diff_lines": 20},
        search={"proposers": [{"type": "llm_code"}]}, llm={"model": "openai/x", "input_cost_per_token": 0,
                                                          "output_cost_per_token": 0},
    ))
    setup = prepare(config, None)
    repo = CampaignRepo(Path(config.campaign_dir or "") / "repo")
    return CodeDrafter("llm_code", config, config.search.proposers[0], repo), setup["snapshot_commit"], config


BONUS_CLAIM = {"knob": "bonus", "from": 0.0, "to": 0.2, "direction": "up", "scope": "model"}


def _item(diff: str, aspect: Any = "architecture", **extra: Any) -> dict[str, Any]:
    return {"aspect": aspect, "hypothesis": "raise the bonus", "diff": diff, "claim": BONUS_CLAIM, **extra}


HUGE = "".join(f"+LINE_{i} = {i}\n" for i in range(40))


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (_item(bonus_diff("0.2"), aspect=["architecture", "loss"]), "several aspects (architecture, loss)"),
        (_item(bonus_diff("0.2"), aspect="optimizer and loss"), "several aspects (optimizer, loss)"),
        (_item(bonus_diff("0.2"), aspect="vibes"), "not one of"),
        (_item(bonus_diff("0.2"), aspect=None), "missing aspect"),
        ({"aspect": "architecture", "diff": bonus_diff("0.2")}, "missing hypothesis"),
        (_item(""), "missing diff"),
        (_item(bonus_diff("0.2").replace("BONUS = 0.0", "BONUS = 9.9")), "does not apply"),
        (_item(bonus_diff("0.2").replace("model.py", "evaluate.py")), "protected path evaluate.py"),
        (_item(bonus_diff("0.2").replace("model.py", "../outside.py")), "outside"),
        (_item(bonus_diff("0.2").replace("a/model.py", "/etc/model.py")), "is absolute"),
        (_item("diff --git a/w.bin b/w.bin\nnew file mode 100644\nBinary files /dev/null and b/w.bin differ\n"),
         "binary"),
        (_item("diff --git a/link.py b/link.py\nnew file mode 120000\n--- /dev/null\n+++ b/link.py\n"
               "@@ -0,0 +1 @@\n+/etc/passwd\n\\ No newline at end of file\n"), "symbolic link"),
        (_item("diff --git a/big.py b/big.py\nnew file mode 100644\n--- /dev/null\n+++ b/big.py\n"
               f"@@ -0,0 +1,40 @@\n{HUGE}"), "more than limits.max_diff_lines=20"),
        (_item(bonus_diff("0.2"), files=["train.py"]), "but the diff touches ['model.py']"),
    ],
)
def test_code_drafts_are_checked_like_the_search_checks_them(
    drafter: tuple[CodeDrafter, str, CampaignConfig], item: dict[str, Any], reason: str
) -> None:
    code_drafter, commit, _ = drafter
    change, why = code_drafter.check(item, commit, {"request_id": 1})
    assert change is None
    assert reason in why, why


def test_a_valid_draft_becomes_a_code_change(drafter: tuple[CodeDrafter, str, CampaignConfig]) -> None:
    code_drafter, commit, _ = drafter
    change, why = code_drafter.check(_item(bonus_diff("0.2"), files=["model.py"]), commit, {"request_id": 7})
    assert why == "" and change is not None
    assert change.kind == "code" and change.aspect == "architecture" and change.proposer == "llm_code"
    assert change.diff == bonus_diff("0.2") and change.source_id.startswith("llm_code-7-")
    assert change.claim == Claim("bonus", 0.0, 0.2, "up", "model")


@pytest.mark.parametrize(
    ("claim", "reason"),
    [
        (None, "missing claim (what the change changes, as data: knob, from, to, direction, scope)"),
        ({"knob": "bonus", "direction": "bigger"}, "claim.direction 'bigger' is not one of"),
        ({"knob": "bonus", "to": {"value": 0.2}}, "claim.to must be a number"),
        ({"mechanism": "bonus"}, "claim has unknown field(s) mechanism"),
    ],
)
def test_a_draft_states_a_valid_claim(
    drafter: tuple[CodeDrafter, str, CampaignConfig], claim: Any, reason: str
) -> None:
    code_drafter, commit, _ = drafter
    change, why = code_drafter.check(_item(bonus_diff("0.2"), claim=claim), commit, {"request_id": 1})
    assert change is None and reason in why, why


def test_a_draft_hears_every_problem_at_once(drafter: tuple[CodeDrafter, str, CampaignConfig]) -> None:
    # A repair round costs a call: the reason names the diff's problem and the claim's.
    code_drafter, commit, _ = drafter
    item = _item(bonus_diff("0.2").replace("BONUS = 0.0", "BONUS = 9.9"), claim={"knob": ""})
    change, why = code_drafter.check(item, commit, {"request_id": 1})
    assert change is None and "does not apply" in why and "claim.knob must be a non-empty name" in why


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"param": "x", "value": 3.0, "claim": {"knob": "y", "to": 3.0}}, "claim.knob 'y' is not the parameter"),
        ({"param": "x", "value": 3.0, "claim": {"knob": "x", "to": 4.0}}, "claim.to 4.0 is not the value"),
        ({"param": "x", "value": 3.0, "claim": {"knob": "x", "direction": "north"}}, "claim.direction 'north'"),
    ],
)
def test_a_params_draft_claims_its_own_change(tmp_path: Path, item: dict[str, Any], reason: str) -> None:
    config = load_config(write_config(tmp_path, search={"proposers": [{"type": "llm_params"}]},
                                      llm={"model": "openai/x", "input_cost_per_token": 0, "output_cost_per_token": 0}))
    params_drafter = ParamsDrafter("llm_params", config, config.search.proposers[0])
    change, why = params_drafter.check(item, {"x": 1.0}, {"request_id": 1})
    assert change is None and reason in why, why
    # Without a claim, or with one that names the change, the claim is derived from the delta.
    for claim in (None, {"knob": "x", "to": 3, "scope": ""}):
        change, why = params_drafter.check({"param": "x", "value": 3.0, "claim": claim}, {"x": 1.0}, {})
        assert why == "" and change is not None and change.claim == Claim("x", 1.0, 3.0, "up")


def test_the_prompts_ask_for_a_claim(tmp_path: Path, drafter: tuple[CodeDrafter, str, CampaignConfig]) -> None:
    code_drafter, commit, config = drafter
    request = {"parent_id": "n0", "parent_commit": commit, "parent_params": {"x": 1.0}}
    system = code_drafter.messages(request)[0]["content"]
    params_system = ParamsDrafter("llm_params", config, config.search.proposers[0]).messages(request)[0]["content"]
    for prompt in (system, params_system):
        assert '"claim": {"knob"' in prompt
        for field in ("knob", "from", "to", "direction", "scope"):
            assert f"\n- {field}: " in prompt  # each field explained on its own line
    assert "up, down, add, remove, replace, set" in system


def test_the_prompt_shows_editable_files_history_and_rejections(
    drafter: tuple[CodeDrafter, str, CampaignConfig],
) -> None:
    code_drafter, commit, _ = drafter
    request = {
        "parent_id": "n3", "parent_commit": commit, "parent_params": {"x": 1.0},
        "records": [
            {"node_id": "n1", "parent_id": "n0", "kind": "code", "aspect": "loss", "hypothesis": "add a penalty",
             "status": "FAILED", "gain": None, "failure_stage": "run", "log_tail": "Traceback\nNameError: nope",
             "reason": "trial failed"},
            {"node_id": "n2", "parent_id": "n0", "kind": "code", "aspect": "architecture",
             "hypothesis": "bigger bonus", "status": "PROMOTED", "gain": 0.2, "ci_low": 0.15, "ci_high": 0.25,
             "reason": "upper boundary"},
        ],
        "rejected": [{"aspect": "loss", "hypothesis": "bigger bonus again", "change": "code",
                      "reason": "duplicate of p2: same edit as 'bigger bonus'"}],
    }
    system, user = (m["content"] for m in code_drafter.messages(request))
    assert "exactly one aspect" in system and "evaluate.py" in system  # protected, named as off limits
    assert "=== model.py" in user and "BONUS = 0.0" in user
    assert "=== evaluate.py" not in user  # protected files are never shown
    assert "failed at stage run" in user and "NameError: nope" in user
    assert "gain 0.2 [0.15, 0.25]" in user
    assert "duplicate of p2" in user
