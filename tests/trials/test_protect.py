"""Protected definitions (file::name): checked at config load, at admission and after train."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.campaign import prepare
from orchestrator.config import ConfigError, load_config
from orchestrator.search import RepoWorkspace
from orchestrator.tree import SearchTree
from tests.toy import SELF_REPORTED_TRAIN, self_reported_diff, write_self_reported_config
from trials.protect import definition_digest
from trials.runner import protected_problems
from trials.worktree import CampaignRepo

EVALUATE_BODY = "    return sum(losses) / len(losses)\n"


def _protect(tmp_path: Path, entries: list[str]) -> Path:
    path = write_self_reported_config(tmp_path, [])
    data = yaml.safe_load(path.read_text())
    data["protected"] = entries
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_definition_in_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = _protect(tmp_path, ["model.py::evaluate"])
    with pytest.raises(ConfigError, match=r"campaign\.yaml:\d+: protected\.0: 'model.py::evaluate': model.py is not a "
                                          r"file of the project"):
        load_config(path)


def test_a_missing_definition_is_a_config_error_naming_what_to_fix(tmp_path: Path) -> None:
    path = _protect(tmp_path, ["train.py::evaluate", "train.py::Evaluator.score"])
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "protected.1: 'train.py::Evaluator.score'" in message
    assert "defines no function or class Evaluator.score" in message and "protect the whole file" in message
    line = yaml.compose(path.read_text()).value  # the line of the offending entry in the config file
    entries = next(v for k, v in line if k.value == "protected")
    assert f"campaign.yaml:{entries.value[1].start_mark.line + 1}:" in message


def test_a_misspelt_entry_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"protected\.0: 'train.py::': \(empty\) is not a qualified name"):
        load_config(_protect(tmp_path, ["train.py::"]))


def test_methods_are_found_through_their_class(tmp_path: Path) -> None:
    source = "class Evaluator:\n    def score(self):\n        '''doc'''\n        return 1\n"
    assert definition_digest(source, "Evaluator.score") is not None
    assert definition_digest(source, "Evaluator.other") is None
    assert definition_digest(source, "score") is None
    # Docstrings, comments and layout are not what a definition computes.
    reworded = "class Evaluator:\n    def score(self):  # the score\n        '''other words'''\n\n        return 1\n"
    assert definition_digest(reworded, "Evaluator.score") == definition_digest(source, "Evaluator.score")
    assert definition_digest(source.replace("return 1", "return 2"), "Evaluator.score") != definition_digest(
        source, "Evaluator.score"
    )


def _workspace(tmp_path: Path) -> tuple[RepoWorkspace, SearchTree, str]:
    config = load_config(write_self_reported_config(tmp_path, []))
    setup = prepare(config, None)
    repo = CampaignRepo(Path(config.campaign_dir or "") / "repo")
    tree = SearchTree()
    tree.record("node_created", node_id="n0", parent_id=None, change=None, commit=setup["snapshot_commit"],
                params={}, origin="root")
    return RepoWorkspace(repo, config), tree, setup["protected"]["train.py::evaluate"]


def test_admission_rejects_a_change_to_the_protected_function_and_accepts_one_elsewhere(tmp_path: Path) -> None:
    from orchestrator.change import Change

    workspace, tree, digest = _workspace(tmp_path)
    assert digest == definition_digest(SELF_REPORTED_TRAIN, "evaluate")

    def check(diff: str) -> str:
        return workspace.check(tree.root, Change(kind="code", aspect="loss", hypothesis="h", proposer="q", diff=diff))

    constant = check(self_reported_diff(EVALUATE_BODY, "    return 0.02\n"))
    assert "changes protected definition train.py::evaluate" in constant
    renamed = check(self_reported_diff("def evaluate(model):", "def evaluate_v1(model):"))
    assert "removes, renames or breaks the syntax of protected definition train.py::evaluate" in renamed
    # The same file, another function: allowed, and so is a docstring edit of evaluate itself.
    assert check(self_reported_diff("bonus = 0.0", "bonus = 0.5")) == ""
    assert check(self_reported_diff('"""Mean loss over four held-out batches."""', '"""Mean loss."""')) == ""


def test_the_guard_catches_a_definition_rewritten_on_disk(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(SELF_REPORTED_TRAIN)
    expected = {"train.py::evaluate": definition_digest(SELF_REPORTED_TRAIN, "evaluate") or ""}
    assert protected_problems(expected, tmp_path) == []
    (tmp_path / "train.py").write_text(SELF_REPORTED_TRAIN.replace(EVALUATE_BODY, "    return 0.0\n"))
    assert protected_problems(expected, tmp_path) == ["protected definition train.py::evaluate changed, or is gone"]
    (tmp_path / "train.py").unlink()
    assert protected_problems(expected, tmp_path) == ["protected definition train.py::evaluate changed, or is gone"]


def test_an_evaluated_project_with_a_protected_definition_runs_its_trials(tmp_path: Path) -> None:
    """The evaluator's room holds whole protected files; a definition entry is guarded, not copied."""
    from orchestrator.search import SearchService
    from tests.orchestrator.test_search import drive
    from tests.toy import write_config
    from trials.spec import TrialState

    path = write_config(tmp_path, search={"proposers": [{"type": "grid", "max_proposals": 1}]})
    (tmp_path / "project" / "helpers.py").write_text("def clip(x):\n    return max(0.0, x)\n")
    data = yaml.safe_load(path.read_text())
    data["protected"] = ["evaluate.py", "helpers.py::clip"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    config = load_config(path)
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    drive(service, stop_after=2)
    states = {r.state for r in service.tree.trials.values() if r.state.is_finished()}
    assert states == {TrialState.COMPLETE}, [r.result.message for r in service.tree.trials.values() if r.result]
