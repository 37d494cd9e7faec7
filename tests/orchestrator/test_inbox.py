"""`arborist inject`: what is checked at once, and how items reach a running campaign."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator.campaign import prepare
from orchestrator.config import CampaignConfig, load_config
from orchestrator.inbox import InjectError, inbox_path, inject, parse_param
from orchestrator.proposers.queue import load_queue
from orchestrator.search import SearchService
from tests.orchestrator.test_search import drive
from tests.toy import bonus_diff, write_config


@pytest.fixture
def prepared(tmp_path: Path) -> tuple[CampaignConfig, Path]:
    config = load_config(write_config(tmp_path, search={"proposers": [{"type": "grid"}]}))
    prepare(config, None)
    return config, Path(config.campaign_dir or "")


PROTECTED = ("diff --git a/evaluate.py b/evaluate.py\n--- a/evaluate.py\n+++ b/evaluate.py\n"
             "@@ -1,2 +1,2 @@\n \n-# Evaluation (DO NOT CHANGE)\n+# Evaluation (changed)\n")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hypothesis": "  ", "param": ("x", 2.0)}, "--hypothesis is empty"),
        ({"hypothesis": "h"}, "exactly one of --diff"),
        ({"hypothesis": "h", "param": ("x", 2.0), "diff": "x"}, "exactly one of --diff"),
        ({"hypothesis": "h", "param": ("y", 2.0)}, "not a declared hyperparameter (declared: x)"),
        ({"hypothesis": "h", "param": ("x", "big")}, "a number is expected"),
        ({"hypothesis": "h", "param": ("x", 7.5)}, "outside its range [0, 6]"),
        ({"hypothesis": "h", "diff": "+x\n"}, "needs --aspect"),
        ({"hypothesis": "h", "diff": bonus_diff("0.2"), "aspect": "vibes"}, "needs --aspect, one of"),
        ({"hypothesis": "h", "diff": PROTECTED, "aspect": "loss"}, "protected path evaluate.py"),
    ],
)
def test_bad_injections_say_what_to_fix(prepared: tuple[CampaignConfig, Path], kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    config, campaign = prepared
    with pytest.raises(InjectError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        inject(campaign, config, **kwargs)
    assert not inbox_path(campaign).exists()


def test_items_round_trip_through_the_queue_format(prepared: tuple[CampaignConfig, Path]) -> None:
    config, campaign = prepared
    tricky = bonus_diff("0.2").replace("+BONUS = 0.2\n", "+BONUS = 0.2   \n")  # trailing spaces survive
    inject(campaign, config, hypothesis="a larger bonus", aspect="architecture", diff=tricky)
    inject(campaign, config, hypothesis="x near 3", param=parse_param("x=3"), item_id="mine")
    with pytest.raises(InjectError, match="already in"):
        inject(campaign, config, hypothesis="again", param=("x", 2.0), item_id="mine")
    items = load_queue(inbox_path(campaign))
    assert [i["id"] for i in items] == ["inject-1", "mine"]
    assert items[0]["diff"] == tricky and items[1]["params"] == {"x": 3}


def test_concurrent_injections_lose_nothing(prepared: tuple[CampaignConfig, Path]) -> None:
    config, campaign = prepared

    def one(i: int) -> None:
        inject(campaign, config, hypothesis=f"value {i}", param=("x", i * 0.1))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    items = load_queue(inbox_path(campaign))
    assert len(items) == 12 and len({i["id"] for i in items}) == 12


def test_an_injected_change_runs_first_and_is_screened_like_any(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, search={"proposers": [{"type": "grid"}]}))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    campaign = Path(config.campaign_dir or "")
    inject(campaign, config, hypothesis="a larger bonus", aspect="architecture", diff=bonus_diff("0.2"))
    inject(campaign, config, hypothesis="the same bonus again", aspect="architecture", diff=bonus_diff("0.2"))
    drive(service)
    service.close()
    inbox = [p for p in service.tree.proposals if p.change.proposer == "inbox"]
    assert [p.verdict for p in inbox] == ["accepted", "rejected"]
    assert inbox[1].duplicate_of == inbox[0].proposal_id
    first_search = min((n for n in service.tree.nodes.values() if n.origin == "search"), key=lambda n: n.created_seq)
    assert first_search.change is not None and first_search.change.proposer == "inbox"
