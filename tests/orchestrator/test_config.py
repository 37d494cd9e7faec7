"""Every config mistake names the file, the field and the line, and nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.config import ConfigError, load_config
from tests.toy import write_config


def _rewrite(path: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(path.read_text())
    mutate(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_valid_config_resolves_paths(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    assert config.objective == "score"
    assert list(config.guards) == ["size"]
    assert Path(config.project).is_absolute() and Path(config.project).is_dir()
    assert config.ray.scratch_dir == Path(config.campaign_dir or "") / "scratch"
    assert config.default_params() == {"x": 1.0}


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, project="project", campaign_dir="runs/c")
    monkeypatch.chdir("/")
    config = load_config(path)
    assert config.project == (tmp_path / "project").resolve()
    assert config.campaign_dir == (tmp_path / "runs/c").resolve()


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda d: d.update(seeds={"baseline": 6, "max": 4}), "seeds", "must not exceed max"),
        (lambda d: d.update(seeds={"initial": 3, "max": 8}), "seeds", "seeds.initial was removed"),
        (lambda d: d.update(stats={"confirm_seeds": 1}), "stats", "stats.confirm_seeds was removed"),
        (lambda d: d["metrics"]["score"].update(direction="up"), "metrics.score.direction", "'min' or 'max'"),
        (lambda d: d["metrics"].update(size={"direction": "min", "role": "objective"}), "metrics", "exactly one"),
        (lambda d: d["metrics"]["size"].pop("max"), "metrics.size", "a guard needs a bound"),
        (lambda d: d.update(entyrpoint=d["entrypoint"]), "entyrpoint", "unknown field"),
        (lambda d: d.pop("search"), "search", "required field is missing"),
        (lambda d: d["params"]["x"].update(default=9.0), "params.x", "outside [0.0, 6.0]"),
        (lambda d: d["params"].update(k={"type": "choice", "values": [1, 2], "default": 3}), "params.k", "not one of"),
        (lambda d: d["params"]["x"].update(log=True), "params.x", "log: true needs low > 0"),
        (lambda d: d.update(protected=["../outside.py"]), "protected", "inside the project"),
        (lambda d: d["metrics"]["score"].update(regex="(unclosed"), "metrics.score.regex", "does not compile"),
        (lambda d: d["metrics"]["score"].update(regex=r"score: [0-9.]+"), "metrics.score.regex", "no capture group"),
        (lambda d: d["metrics"].update({"val loss": {"direction": "min"}}), "metrics", "'val loss' is not usable"),
        (lambda d: d.update(name="has space"), "name", "letters, digits"),
        (lambda d: d["budget"].update(max_trials=0), "budget.max_trials", "greater than or equal to 1"),
        (lambda d: d.update(seeds={"baseline": 1, "max": 1}), "(top level)", "could ever be promoted"),
    ],
)
def test_invalid_fields_are_named_with_their_line(tmp_path: Path, mutate, field: str, words: str) -> None:  # type: ignore[no-untyped-def]
    path = _rewrite(write_config(tmp_path), mutate)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert field in message
    assert words in message
    assert f"{path}:" in message  # a line number follows the file name


def test_missing_project_is_reported(tmp_path: Path) -> None:
    path = _rewrite(write_config(tmp_path), lambda d: d.update(project=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match=r"project: .*nope does not exist"):
        load_config(path)


def test_missing_hypotheses_file_is_reported(tmp_path: Path) -> None:
    def mutate(d: dict) -> None:  # type: ignore[type-arg]
        d["search"]["proposers"][0]["path"] = "missing.yaml"

    path = _rewrite(write_config(tmp_path), mutate)
    with pytest.raises(ConfigError, match=r"search\.proposers\.0\.path: .*missing.yaml does not exist"):
        load_config(path)


def test_unknown_placeholder_in_command(tmp_path: Path) -> None:
    path = _rewrite(write_config(tmp_path), lambda d: d["entrypoint"].update(train="python train.py --lr {lr}"))
    with pytest.raises(ConfigError, match=r"unknown placeholder \{lr\}; known: .*seed.*x"):
        load_config(path)


def test_heldout_must_live_outside_the_project(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    inside = tmp_path / "project" / "test.npz"
    inside.write_text("x")
    _rewrite(path, lambda d: d.update(data={"heldout": {"HELDOUT": str(inside)}}))
    with pytest.raises(ConfigError, match="inside the project"):
        load_config(path)


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nproject: [unclosed\nmetrics: {}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_config(path)


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="YAML mapping"):
        load_config(path)


@pytest.mark.parametrize("name", ["quickstart.yaml", "cluster.yaml", "llm.yaml"])
def test_shipped_configs_load(name: str) -> None:
    config = load_config(Path(__file__).parents[2] / "configs" / name)
    assert config.search.proposers


def test_llm_proposers_need_an_llm_section(tmp_path: Path) -> None:
    path = write_config(tmp_path, search={"proposers": [{"type": "llm_code"}]})
    with pytest.raises(ConfigError, match=r"llm_code need an `llm:` section"):
        load_config(path)


def test_llm_prices_come_in_pairs(tmp_path: Path) -> None:
    path = write_config(tmp_path, llm={"model": "openai/x", "input_cost_per_token": 1e-6})
    with pytest.raises(ConfigError, match=r"campaign.yaml:\d+: llm: give both input_cost_per_token"):
        load_config(path)


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    first = next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith("name:"))
    path.write_text(path.read_text() + "name: again\n")
    second = len(path.read_text().splitlines())
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}:{second}: key 'name' appears twice" in message
    assert f"first at line {first}" in message and "Keep one of them" in message


@pytest.mark.parametrize(
    ("editable", "protected", "words"),
    [
        (["src/*.py"], [], "matches no file of the project"),
        (["*.py"], ["*.py"], "is also protected"),
    ],
)
def test_editable_files_that_leave_nothing_to_edit_are_refused(
    tmp_path: Path, editable: list[str], protected: list[str], words: str
) -> None:
    path = _rewrite(write_config(tmp_path), lambda d: d.update(editable=editable, protected=protected))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}:" in message and "editable:" in message and words in message


def test_sandbox_and_limits_reach_the_trial_spec(tmp_path: Path) -> None:
    data = tmp_path / "datasets"
    data.mkdir()
    path = write_config(
        tmp_path,
        sandbox={"mode": "bwrap", "network": False, "read_only": [str(data)]},
        limits={"memory_mb": 4096, "max_cpu_s": 60, "max_log_mb": 8, "max_output_mb": 100},
    )
    config = load_config(path)
    assert config.sandbox.mode == "bwrap" and not config.sandbox.network
    assert config.sandbox.read_only == [data.resolve()]
    assert (config.limits.memory_mb, config.limits.max_cpu_s) == (4096, 60)
    assert (config.limits.max_log_mb, config.limits.max_output_mb) == (8, 100)


@pytest.mark.parametrize(
    ("sandbox", "words"),
    [
        ({"mode": "docker"}, "sandbox.mode"),
        ({"read_only": ["missing-data"]}, r"sandbox.read_only.0: .*missing-data does not exist"),
        ({"read_only": ["."]}, r"sandbox.read_only.0: .* overlaps the campaign folder"),
    ],
)
def test_a_bad_sandbox_section_is_refused(tmp_path: Path, sandbox: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config(write_config(tmp_path, sandbox=sandbox))


def test_limits_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"limits\.max_log_mb"):
        load_config(write_config(tmp_path, limits={"max_log_mb": 0}))
