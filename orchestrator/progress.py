"""Live progress in the terminal: trials running, done and failed; the incumbent; budget used."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

FAILED_STATES = ("FAIL", "TIMEOUT", "INVALID")
CHANGE_WIDTH = 60  # a long hypothesis is cut in the live display; the report has it whole


PLAIN_EVERY_S = 10.0  # without a terminal (CI, logs), one line this often


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= CHANGE_WIDTH else text[: CHANGE_WIDTH - 1] + "…"


def _budget(p: dict[str, Any]) -> str:
    """Trials spent against each stage's own budget: the search's, then integration's."""
    text = f"{p['trials_spent']}/{p['max_trials']} search trials"
    if p["phase"] == "integration" or p.get("integration_spent"):
        text += f", {p.get('integration_spent', 0)}/{p.get('integration_max', 0)} integration trials"
    return text


def _wall(p: dict[str, Any]) -> str:
    """Elapsed against the wall-clock budget; past it (integration, or trials in their grace) the
    elapsed time alone, since budget.max_wall_s bounds the search, not the integration stage."""
    elapsed, limit = p["elapsed_s"], p["max_wall_s"]
    if elapsed <= limit:
        return f"{elapsed:.0f}/{limit:.0f} s"
    return f"{elapsed:.0f} s (search budget {limit:.0f} s spent)"


def _nodes(nodes: dict[str, int]) -> str:
    text = f"{nodes.get('PROMOTED', 0)} promoted, {nodes.get('PRUNED', 0)} pruned, {nodes.get('FAILED', 0)} failed"
    if nodes.get("UNDECIDED"):
        text += f", {nodes['UNDECIDED']} undecided"
    return text + f", {nodes.get('OPEN', 0)} open"


def progress_line(p: dict[str, Any]) -> str:
    trials = p["counts"]["trials"]
    done = trials.get("COMPLETE", 0)
    failed = sum(trials.get(s, 0) for s in FAILED_STATES)
    nodes = p["counts"]["nodes"]
    inc = p.get("incumbent")
    incumbent = "none" if inc is None else f"{inc['node_id']} ({_short(inc['change'])}, gain {inc['gain']:+.4g})"
    return (
        f"[{p['name']}] {p['phase']}: trials {p['running']} running, {done} done, {failed} failed "
        f"({_budget(p)}); nodes {_nodes(nodes)}; "
        f"incumbent {incumbent}; {_wall(p)}"
        + (f"; LLM ${p['llm_usd']:.4f} over {p['llm_calls']} calls" if p.get("llm_calls") else "")
    )


def _table(p: dict[str, Any]) -> Table:
    table = Table(title=f"arborist: {p['name']} ({p['phase']})", show_header=False, expand=False)
    trials = p["counts"]["trials"]
    failed = sum(trials.get(s, 0) for s in FAILED_STATES)
    nodes = p["counts"]["nodes"]
    inc = p.get("incumbent")
    table.add_row("trials", f"{p['running']} running, {trials.get('COMPLETE', 0)} done, {failed} failed")
    table.add_row("budget", f"{_budget(p)}, {_wall(p)}")
    table.add_row("nodes", f"{_nodes(nodes)}; {p['proposals']} proposals")
    table.add_row(
        "incumbent",
        "none" if inc is None else f"{inc['node_id']}: {_short(inc['change'])} (gain {inc['gain']:+.4g})",
    )
    if p.get("llm_calls"):
        cap = p.get("max_llm_usd")
        table.add_row("LLM", f"{p['llm_calls']} calls, ${p['llm_usd']:.4f}" + (f" of ${cap:.2f}" if cap else ""))
    return table


class ProgressDisplay:
    """A live table on a terminal; periodic plain lines elsewhere."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._live: Live | None = None
        self._last_plain = 0.0

    def __enter__(self) -> ProgressDisplay:
        if self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, p: dict[str, Any]) -> None:
        if self._live is not None:
            self._live.update(_table(p))
            return
        now = time.monotonic()
        if now - self._last_plain >= PLAIN_EVERY_S or p["phase"] == "done":
            self._last_plain = now
            self.console.print(progress_line(p), highlight=False, soft_wrap=True)
