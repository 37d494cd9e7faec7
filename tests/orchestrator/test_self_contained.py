"""A campaign folder holds what a resume needs: the hypotheses files (with the diff files their
items name) are copied in at the start and kept up to date, so a resume after the files, and
the project, are gone still proposes what was left. Real trials, no Ray."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from orchestrator import campaign, report
from orchestrator.cli import EXIT_USAGE, main
from orchestrator.config import ConfigError, load_config
from orchestrator.proposers.queue import copy_path, copy_text, load_queue, write_copy
from orchestrator.search import SearchService
from tests.orchestrator.test_search import drive
from tests.toy import extra_diff, queue_items, write_config

LATE = {"id": "late", "hypothesis": "x nearer its optimum helps", "params": {"x": 2.5}}


def _queue(tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    """The toy queue, with `extra` given as a diff_file in a folder of its own."""
    items: list[dict[str, object]] = list(queue_items())
    (tmp_path / "diffs").mkdir()
    (tmp_path / "diffs" / "extra.diff").write_text(extra_diff("0.1"))
    items[1] = {"id": "extra", "aspect": "data", "hypothesis": "an extra feature helps",
                "diff_file": "diffs/extra.diff"}
    queue = tmp_path / "hypotheses.yaml"
    queue.write_text(yaml.safe_dump(items, sort_keys=False))
    return queue, items


def test_a_resume_proposes_what_was_left_after_the_hypotheses_and_the_project_are_gone(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, search={"proposers": [{"type": "queue", "path": str(tmp_path / "hypotheses.yaml")}],
                          "max_open_nodes": 1},
        integration={"enabled": False}, budget={"max_trials": 200},
    )
    queue, items = _queue(tmp_path)
    config = load_config(path)
    first = SearchService(config.model_dump(mode="json"), campaign.prepare(config, path))
    campaign_dir = Path(str(config.campaign_dir))
    recorded = json.loads((campaign_dir / campaign.CAMPAIGN_FILE).read_text())["inputs"]
    assert recorded == {"queue": {"path": str(queue), "copy": "inputs/queue.yaml"}}
    copy = copy_path(campaign_dir, "queue")
    assert [i["id"] for i in load_queue(copy)] == [i["id"] for i in items]
    # A person appends an item while the campaign runs; the next expansion reads it, and the copy with it.
    queue.write_text(yaml.safe_dump([*items, LATE], sort_keys=False))
    # The baseline; its decision expands the root once (max_open_nodes: 1). The item that touches a
    # protected path was rejected at the start, before any trial, as every such item is.
    drive(first, stop_after=3)
    assert [(p.change.source_id, p.verdict) for p in first.tree.proposals] == [("tamper", "rejected"),
                                                                              ("better", "accepted")]
    first.close()
    assert [i["id"] for i in load_queue(copy)][-1] == "late"

    # A new job: the working directory that held the config's files is gone, project included.
    shutil.rmtree(tmp_path / "project")
    shutil.rmtree(tmp_path / "diffs")
    queue.unlink()
    assert campaign.check_inputs(config) == [
        f"proposer queue: its hypotheses file {queue} is gone; reading the campaign's copy {copy}, which holds "
        "the file as it was last read"
    ]
    resumed = SearchService(config.model_dump(mode="json"), None)
    drive(resumed)
    resumed.close()

    tree = report.load_tree(config)
    proposed = [p.change.source_id for p in tree.proposals]
    assert sorted(proposed) == sorted(["better", "extra", "worse", "breaks", "tamper", "late"])
    extra = next(p for p in tree.proposals if p.change.source_id == "extra")
    assert extra.verdict == "accepted" and extra.change.diff == extra_diff("0.1")  # the diff file's text
    late = next(p for p in tree.proposals if p.change.source_id == "late")
    assert late.verdict == "accepted" and late.change.params == {"x": 2.5}
    notes = [e.data["message"] for e in resumed.ledger.load_events() if e.type == "note"]
    gone = [n for n in notes if f"hypotheses file {queue} is gone" in n]
    assert gone == [f"hypotheses file {queue} is gone: reading the campaign's copy {copy}, which holds the file "
                    "as it was last read"], "the fallback is journaled once"


def test_a_resume_with_an_input_gone_and_no_copy_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, integration={"enabled": False})
    config = load_config(path)
    service = SearchService(config.model_dump(mode="json"), campaign.prepare(config, path))
    drive(service, stop_after=3)
    service.close()
    campaign_dir = Path(str(config.campaign_dir))
    queue = tmp_path / "hypotheses.yaml"
    queue.unlink()
    copy_path(campaign_dir, "queue").unlink()  # as in a folder from before copies were kept
    with pytest.raises(ConfigError, match="Put the file back at"):
        campaign.check_inputs(config)
    # The command line says so before it starts Ray, and changes nothing.
    journal = (campaign_dir / "journal.wal").read_bytes()
    assert main(["resume", str(campaign_dir), "--quiet"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"its hypotheses file {queue} is gone" in err and "holds no copy" in err
    assert f"Put the file back at {queue}" in err
    assert (campaign_dir / "journal.wal").read_bytes() == journal


def test_a_half_prepared_folder_whose_project_is_gone_says_so(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    campaign.prepare(config, None)
    campaign_dir = Path(str(config.campaign_dir))
    (campaign_dir / campaign.SETUP_FILE).unlink()  # as if the start died while preparing
    shutil.rmtree(tmp_path / "project")
    with pytest.raises(ConfigError, match=r"its project .*project is gone, so it cannot be prepared again"):
        campaign.finish_start(config)


def test_the_copy_reads_back_as_the_items_it_was_made_from(tmp_path: Path) -> None:
    queue, _ = _queue(tmp_path)
    crlf = {"id": "crlf", "aspect": "data", "hypothesis": "windows line ends",
            "diff": extra_diff("0.2").replace("\n", "\r\n") + "  trailing  \n"}
    queue.write_text(yaml.safe_dump([*yaml.safe_load(queue.read_text()), crlf]))
    items = load_queue(queue)
    copy = tmp_path / "copy" / "queue.yaml"
    write_copy(copy, copy_text(queue, items))
    again = load_queue(copy)
    assert again == [{k: v for k, v in item.items() if k != "diff_file"} for item in items]
    assert again[1]["diff"] == extra_diff("0.1") and "diff_file" not in again[1]
