"""The labelled real experiment logs (tests/data/real_logs): what they hold, and the memory's
figures on the held-out ones kept from slipping back (scripts/bench_memory.py measures them;
docs/benchmarks.md has the figures and the targets)."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from bench_memory import judge_logs, load_logs, pair_scores, replay_scores, split_of

LABELS = {"repeat", "revisit", "sweep-step", "near-miss", "different"}


@pytest.fixture(scope="module")
def logs() -> list[dict[str, Any]]:
    return load_logs()


def test_the_set_is_large_and_says_where_each_row_came_from(logs: list[dict[str, Any]]) -> None:
    assert len({log["repo"] for log in logs}) >= 12
    assert sum(len(log["pairs"]) for log in logs) >= 400
    for log in logs:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", log["repo"]) and re.fullmatch(r"[0-9a-f]{40}", log["commit"])
        assert log["path"] and log["metrics"], log["repo"]
        numbers = [row.row for row in log["rows"]]
        assert numbers == sorted(set(numbers)) and all(row.description.strip() for row in log["rows"])
        assert {row.status for row in log["rows"]} <= {"keep", "discard", "crash"}
    # Both splits hold several repositories, and the rule does not depend on which others exist.
    splits = Counter(log["split"] for log in logs)
    assert splits["tune"] >= 5 and splits["report"] >= 5
    assert all(log["split"] == split_of(log["repo"]) for log in logs)


def test_every_label_follows_the_rules_of_the_readme(logs: list[dict[str, Any]]) -> None:
    for log in logs:
        rows = {row.row: row for row in log["rows"]}
        seen = set()
        for earlier, later, label, why in log["pairs"]:
            assert label in LABELS and why, (log["repo"], earlier, later)
            assert earlier in rows and later in rows and earlier < later, (log["repo"], earlier, later)
            assert (earlier, later) not in seen
            seen.add((earlier, later))
            if label in ("repeat", "revisit"):
                kept = rows[earlier].status == "keep"
                moved = any(rows[n].status == "keep" for n in rows if earlier < n < later)
                revisit = not kept and (moved or rows[earlier].status == "crash")
                assert (label == "revisit") == revisit, (log["repo"], earlier, later, label)


def test_the_held_out_figures_hold(logs: list[dict[str, Any]]) -> None:
    """Floors under what was measured on the report repositories, not the targets (several are
    not met: docs/benchmarks.md)."""
    report = [log for log in logs if log["split"] == "report"]
    scores = pair_scores(judge_logs(report))
    assert scores["near_miss_as_repeat"] <= 0.03
    assert scores["sweep_as_repeat"] <= 0.07
    assert scores["repeat_recall"] >= 0.6
    assert scores["revisit_as_revisit"] >= 0.55
    assert scores["different_as_repeat"] <= 0.01
    replays = replay_scores(report)
    rows = sum(r["rows"] for r in replays)
    rejected = sum(r["rejected"] for r in replays)
    repeats = sum(r["true_repeats"] for r in replays)
    # The memory before claims and verdicts turned away a third of these rows.
    assert rejected <= repeats + 0.05 * rows, replays
