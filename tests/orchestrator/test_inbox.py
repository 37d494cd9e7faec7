"""`arborist inject`: what is checked at once, and how items reach a running campaign."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.campaign import prepare
from orchestrator.config import CampaignConfig, LimitsConfig, load_config
from orchestrator.inbox import InjectError, dump_items, inbox_path, inject, parse_param, read_diff
from orchestrator.proposers.queue import load_queue
from orchestrator.search import SearchService
from tests.orchestrator.test_search import drive
from tests.toy import bonus_diff, train_diff, write_config
from tests.waiting import wait_for

PARAMS = {
    "x": {"type": "float", "low": 0.0, "high": 6.0, "default": 1.0},
    "layers": {"type": "int", "low": 1, "high": 8, "default": 2},
    "opt": {"type": "choice", "values": ["adam", "sgd"], "default": "adam"},
    "switch": {"type": "choice", "values": ["on", "off"], "default": "off"},
    "width": {"type": "choice", "values": [1, 2], "default": 1},
}


@pytest.fixture
def campaign(tmp_path: Path) -> tuple[CampaignConfig, Path]:
    """A config and its (empty) campaign folder: inject needs no more than that."""
    config = load_config(write_config(tmp_path, params=PARAMS, editable=["model.py", "train.py", "src/"]))
    folder = Path(config.campaign_dir or "")
    folder.mkdir()
    return config, folder


PROTECTED = ("diff --git a/evaluate.py b/evaluate.py\n--- a/evaluate.py\n+++ b/evaluate.py\n"
             "@@ -1,2 +1,2 @@\n \n-# Evaluation (DO NOT CHANGE)\n+# Evaluation (changed)\n")
OUTSIDE = bonus_diff("0.2").replace("model.py", "features.py")
ESCAPES = bonus_diff("0.2").replace("model.py", "../elsewhere.py")
BINARY = ("diff --git a/src/w.bin b/src/w.bin\nnew file mode 100644\nindex 0000000..e69de29\n"
          "GIT binary patch\nliteral 3\nKcmZ?wX8-^I0RR91\n\nliteral 0\nHcmV?d00001\n\n")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hypothesis": "  ", "param": ("x", 2.0)}, "--hypothesis is empty"),
        ({"hypothesis": "h"}, "exactly one of --diff"),
        ({"hypothesis": "h", "param": ("x", 2.0), "diff": "x"}, "exactly one of --diff"),
        ({"hypothesis": "h", "param": ("y", 2.0)}, "not a declared hyperparameter (declared: layers, opt, switch, "),
        ({"hypothesis": "h", "param": ("x", "big")}, "a number is expected"),
        ({"hypothesis": "h", "param": ("x", True)}, "a number is expected"),
        ({"hypothesis": "h", "param": ("x", 7.5)}, "outside its range [0, 6]"),
        ({"hypothesis": "h", "param": ("layers", 2.5)}, "an integer is expected"),
        ({"hypothesis": "h", "param": ("layers", 0)}, "outside its range [1, 8]"),
        ({"hypothesis": "h", "param": ("opt", "adagrad")}, "not one of ['adam', 'sgd']"),
        ({"hypothesis": "h", "param": ("width", True)}, "not one of [1, 2]"),
        ({"hypothesis": "h", "param": ("x", 2.0), "aspect": "optimizer"}, "--aspect is for code changes"),
        ({"hypothesis": "h", "diff": "+x\n"}, "needs --aspect"),
        ({"hypothesis": "h", "diff": bonus_diff("0.2"), "aspect": "vibes"}, "needs --aspect, one of: optimizer,"),
        ({"hypothesis": "h", "diff": PROTECTED, "aspect": "loss"}, "protected path evaluate.py"),
        ({"hypothesis": "h", "diff": OUTSIDE, "aspect": "data"}, "features.py"),
        ({"hypothesis": "h", "diff": ESCAPES, "aspect": "data"}, "../elsewhere.py"),
        ({"hypothesis": "h", "diff": BINARY, "aspect": "data"}, "binary patch"),
        ({"hypothesis": "h", "diff": "not a diff\n", "aspect": "data"}, "not a unified diff"),
        ({"hypothesis": "h", "param": ("x", 2.0), "item_id": " "}, "--id is empty"),
    ],
)
def test_bad_injections_say_what_to_fix(
    campaign: tuple[CampaignConfig, Path], kwargs: dict[str, Any], message: str
) -> None:
    config, folder = campaign
    with pytest.raises(InjectError, match=re.escape(message)):
        inject(folder, config, **kwargs)
    assert not inbox_path(folder).exists()


def test_a_diff_over_the_size_limit_is_refused(campaign: tuple[CampaignConfig, Path]) -> None:
    config, folder = campaign
    small = config.model_copy(update={"limits": LimitsConfig(max_diff_lines=1)})
    with pytest.raises(InjectError, match=r"changes 2 lines, more than limits\.max_diff_lines=1"):
        inject(folder, small, hypothesis="h", aspect="architecture", diff=bonus_diff("0.2"))


def test_values_are_stored_as_the_config_declares_them(campaign: tuple[CampaignConfig, Path]) -> None:
    config, folder = campaign
    cases = {"x=3": ("x", 3.0), "x=1e-3": ("x", 0.001), "layers=4.0": ("layers", 4), "opt=sgd": ("opt", "sgd"),
             "switch=on": ("switch", "on"), "width=2": ("width", 2)}
    for text, (name, value) in cases.items():
        item = inject(folder, config, hypothesis=f"try {text}", param=parse_param(text))
        assert item["params"] == {name: value} and type(item["params"][name]) is type(value)
        assert item["aspect"] == name
    stored = [i["params"] for i in load_queue(inbox_path(folder))]
    assert stored == [{n: v} for n, v in cases.values()]


@pytest.mark.parametrize("text", ["x", "=3", "x=[1"])
def test_param_needs_name_equals_value(text: str) -> None:
    with pytest.raises(InjectError, match="--param"):
        parse_param(text)


def test_ids_count_up_and_are_never_reused(campaign: tuple[CampaignConfig, Path]) -> None:
    config, folder = campaign
    inject(folder, config, hypothesis="one", param=("x", 2.0))
    inject(folder, config, hypothesis="mine", param=("x", 2.5), item_id="inject-2")
    third = inject(folder, config, hypothesis="three", param=("x", 3.0))
    assert third["id"] == "inject-3"
    with pytest.raises(InjectError, match="'inject-2' is already in"):
        inject(folder, config, hypothesis="again", param=("x", 2.0), item_id="inject-2")
    assert [i["id"] for i in load_queue(inbox_path(folder))] == ["inject-1", "inject-2", "inject-3"]


def test_diffs_round_trip_byte_for_byte_as_readable_blocks(campaign: tuple[CampaignConfig, Path]) -> None:
    config, folder = campaign
    # A trailing space on a changed line, a blank context line (" \n") and a tab: PyYAML alone
    # would fall back to a quoted one-line string for any of them.
    tricky = train_diff("import model\n", "import model   \n")
    tabbed = train_diff("import json, os, random\n", "import json, os, random\t# why\n")
    assert " \n" in tricky and "\t" in tabbed
    inject(folder, config, hypothesis="spaces", aspect="other", diff=tricky)
    inject(folder, config, hypothesis="tab", aspect="other", diff=tabbed)
    text = inbox_path(folder).read_text()
    assert text.count("diff: |") == 2 and "\\n" not in text
    items = load_queue(inbox_path(folder))
    assert [i["diff"] for i in items] == [tricky, tabbed]


@pytest.mark.parametrize(
    "diff",
    [
        "--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-a\n+b",  # no final newline
        "--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-a\n+b\n\n\n",  # several
        "--- a/m.py\r\n+++ b/m.py\r\n@@ -1 +1 @@\r\n-a\r\n+b\r\n",  # CRLF: no block can hold it
        " leading space\n+b  \n",
        "--- a/m.py\n+++ b/m.py\n-\u00e9t\u00e9\n+\u2028x\n+\ufeffy\n",
        "---\n...\n- item: [1]\n# not a comment\n",
    ],
)
def test_any_text_reads_back_as_written(diff: str) -> None:
    items = [{"id": "a", "aspect": "other", "hypothesis": "h", "diff": diff}]
    assert yaml.safe_load(dump_items(items)) == items


def test_block_style_only_where_it_reads_back() -> None:
    crlf = [{"diff": "a\r\nb\r\n"}]
    assert "|" not in dump_items(crlf) and yaml.safe_load(dump_items(crlf)) == crlf
    assert "diff: |" in dump_items([{"diff": "a \nb\n"}])


def test_appending_keeps_what_a_person_wrote(campaign: tuple[CampaignConfig, Path]) -> None:
    config, folder = campaign
    path = inbox_path(folder)
    path.write_text("# ideas from Tuesday's meeting\n- id: mine\n  hypothesis: bigger x\n  params: {x: 4}  # why not")
    path.chmod(0o640)
    inject(folder, config, hypothesis="smaller x", param=("x", 2.0))
    text = path.read_text()
    assert text.startswith("# ideas from Tuesday's meeting\n") and "# why not\n" in text
    assert [i["id"] for i in load_queue(path)] == ["mine", "inject-1"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    path.write_text("[{id: a, hypothesis: h, params: {x: 1}}]\n")  # a flow list cannot be appended to
    inject(folder, config, hypothesis="another", param=("x", 2.0))
    assert [i["id"] for i in load_queue(path)] == ["a", "inject-1"]


def test_a_broken_inbox_is_reported_and_left_alone(campaign: tuple[CampaignConfig, Path]) -> None:
    config, folder = campaign
    inbox_path(folder).write_text("- id: a\n  hypothesis: [unclosed\n")
    with pytest.raises(InjectError, match=r"fix .*inbox\.yaml first"):
        inject(folder, config, hypothesis="h", param=("x", 2.0))
    assert inbox_path(folder).read_text() == "- id: a\n  hypothesis: [unclosed\n"


def test_a_missing_campaign_folder_is_not_created(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    with pytest.raises(InjectError, match="does not exist"):
        inject(tmp_path / "nowhere", config, hypothesis="h", param=("x", 2.0))
    assert not (tmp_path / "nowhere").exists()


def test_read_diff_wants_a_text_file(tmp_path: Path) -> None:
    with pytest.raises(InjectError, match="does not exist"):
        read_diff(tmp_path / "missing.diff")
    with pytest.raises(InjectError, match="is a folder"):
        read_diff(tmp_path)
    for data in (b"\x89PNG\r\n\x1a\n\x00\x00", b"\xff\xfe\xfa caf\xe9"):
        (tmp_path / "blob").write_bytes(data)
        with pytest.raises(InjectError, match="is not text"):
            read_diff(tmp_path / "blob")
    (tmp_path / "crlf.diff").write_bytes(b"--- a/m.py\r\n+++ b/m.py\r\n")
    assert read_diff(tmp_path / "crlf.diff") == "--- a/m.py\r\n+++ b/m.py\r\n"


def test_concurrent_injections_from_threads_lose_nothing(campaign: tuple[CampaignConfig, Path]) -> None:
    config, folder = campaign

    def one(i: int) -> None:
        inject(folder, config, hypothesis=f"value {i}", param=("x", i * 0.1))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    items = load_queue(inbox_path(folder))
    assert len({i["id"] for i in items}) == 12
    assert sorted(i["params"]["x"] for i in items) == [i * 0.1 for i in range(12)]


# Each child waits for the word, then injects in a loop, so the injects really overlap.
CHILD = """
import sys, time
from pathlib import Path
from orchestrator.config import CampaignConfig
from orchestrator.inbox import inject
folder, config = Path(sys.argv[1]), CampaignConfig.model_validate_json(sys.argv[2])
child, n = sys.argv[3], int(sys.argv[4])
(folder / f"ready-{child}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
for i in range(n):
    inject(folder, config, hypothesis=f"{child}-{i}", param=("x", 1.0))
"""


def test_concurrent_injections_from_processes_lose_nothing(campaign: tuple[CampaignConfig, Path]) -> None:
    # Each `arborist inject` is its own process: the lock must hold across processes too.
    config, folder = campaign
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(folder), config.model_dump_json(), str(c), "10"])
        for c in range(4)
    ]
    wait_for(lambda: len(list(folder.glob("ready-*"))) == len(children), "every injecting process ready",
             seen=lambda: sorted(p.name for p in folder.glob("ready-*")), every_s=0.01)
    (folder / "go").touch()
    assert [child.wait(timeout=60) for child in children] == [0] * len(children)
    items = load_queue(inbox_path(folder))
    assert sorted(i["hypothesis"] for i in items) == sorted(f"{c}-{i}" for c in range(4) for i in range(10))
    assert len({i["id"] for i in items}) == 40
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_an_injected_change_runs_first_and_is_screened_like_any(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, search={"proposers": [{"type": "grid"}]}))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    folder = Path(config.campaign_dir or "")
    inject(folder, config, hypothesis="a larger bonus", aspect="architecture", diff=bonus_diff("0.2"))
    inject(folder, config, hypothesis="the same bonus again", aspect="architecture", diff=bonus_diff("0.2"))
    drive(service)
    service.close()
    inbox = [p for p in service.tree.proposals if p.change.proposer == "inbox"]
    assert [p.verdict for p in inbox] == ["accepted", "rejected"]
    assert inbox[1].duplicate_of == inbox[0].proposal_id
    first_search = min((n for n in service.tree.nodes.values() if n.origin == "search"), key=lambda n: n.created_seq)
    assert first_search.change is not None and first_search.change.proposer == "inbox"
