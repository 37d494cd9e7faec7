"""The live progress line: each stage's trials against its own budget."""

from __future__ import annotations

from typing import Any

from orchestrator.progress import progress_line


def _progress(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "c", "phase": "search", "running": 1, "proposals": 3,
        "counts": {"trials": {"COMPLETE": 30}, "nodes": {"PROMOTED": 2, "PRUNED": 1, "OPEN": 1}},
        "trials_spent": 30, "max_trials": 30, "integration_spent": 0, "integration_max": 40,
        "elapsed_s": 12.0, "max_wall_s": 600.0, "incumbent": None,
    }
    return {**base, **changes}


def test_the_search_line_shows_the_search_budget_alone() -> None:
    line = progress_line(_progress())
    assert "30/30 search trials" in line and "integration" not in line


def test_integration_trials_count_against_their_own_budget() -> None:
    line = progress_line(_progress(phase="integration", integration_spent=6))
    assert "30/30 search trials, 6/40 integration trials" in line
    assert "36/30" not in line


def test_undecided_nodes_are_named_as_such() -> None:
    counts = {"trials": {"COMPLETE": 9}, "nodes": {"PROMOTED": 1, "UNDECIDED": 2}}
    assert "2 undecided" in progress_line(_progress(phase="done", counts=counts))


def test_elapsed_time_past_the_wall_budget_is_not_shown_as_a_fraction_of_it() -> None:
    assert "12/600 s" in progress_line(_progress())
    line = progress_line(_progress(phase="integration", elapsed_s=303.0, max_wall_s=200.0))
    assert "303 s (search budget 200 s spent)" in line and "303/200" not in line
