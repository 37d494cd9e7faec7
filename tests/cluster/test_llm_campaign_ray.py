"""An LLM code proposer on the shared local Ray: the proposer actor drafts, the tree actor
collects, Tune runs the trials; litellm talks HTTP to a scripted server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import campaign, report
from orchestrator.config import load_config
from orchestrator.tree import NodeStatus
from tests.llm_server import ScriptedLLMServer, Step
from tests.toy import NO_WALL_LIMIT_S, bonus_diff, write_config

pytestmark = pytest.mark.usefixtures("ray_session")

KEY_ENV = "ARBORIST_TEST_LLM_KEY"


def test_llm_code_campaign_on_ray(
    tmp_path: Path, llm_server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-SENTINEL-ray")
    llm_server.script(Step(content=json.dumps({"proposals": [
        {"aspect": "architecture", "hypothesis": "raise the model bonus to 0.2", "diff": bonus_diff("0.2"),
         "claim": {"knob": "bonus", "from": 0.0, "to": 0.2, "direction": "up", "scope": "model"}},
    ]}), delay_s=1.0))  # a slow LLM: the search runs params changes meanwhile
    llm_server.default = Step(content=json.dumps({"proposals": []}))
    config = load_config(write_config(
        tmp_path,
        search={"proposers": [{"type": "llm_code"}, {"type": "grid"}], "max_children": 10},
        llm={"model": "openai/scripted", "api_base": llm_server.url, "api_key_env": KEY_ENV,
             "input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6, "backoff_s": 0.0},
        budget={"max_trials": 40, "max_wall_s": NO_WALL_LIMIT_S},
    ))
    final = campaign.run(config, setup=campaign.prepare(config, None))
    assert final["phase"] == "done"
    tree = report.load_tree(config)
    llm_nodes = [n for n in tree.nodes.values() if n.change is not None and n.change.proposer == "llm_code"]
    assert [n.change.hypothesis for n in llm_nodes if n.change] == ["raise the model bonus to 0.2"]
    assert llm_nodes[0].status is NodeStatus.PROMOTED
    assert tree.llm_calls >= 1 and tree.llm_usd > 0
    # The grid ran while the LLM was drafting: the first trial of a search node is not the LLM's.
    first_search = min((n for n in tree.nodes.values() if n.origin == "search"), key=lambda n: n.created_seq)
    assert first_search.change is not None and first_search.change.proposer == "grid"
