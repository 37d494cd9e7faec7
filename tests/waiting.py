"""Waiting on what a test is waiting for (a trial count, a journal entry), not on a clock.

The timeout is only a backstop against a hung run: it is generous, and when it runs out the
failure says what was awaited and what was seen last, so a slow machine and a broken campaign
tell themselves apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from orchestrator.ledger import load_events, open_filesystem
from orchestrator.reader import LEDGER_DIR, journal_path
from orchestrator.tree import Event

T = TypeVar("T")

BACKSTOP_S = 600.0  # below pytest's own 900 s timeout, so this message is the one that shows


def wait_for(
    condition: Callable[[], T],
    what: str,
    *,
    seen: Callable[[], object] | None = None,
    alive: Callable[[], bool] | None = None,
    timeout_s: float = BACKSTOP_S,
    every_s: float = 0.2,
) -> T:
    """Poll `condition` until it returns something truthy, and return that.

    `seen` describes the current state for the failure message; `alive` returning False (a
    process that exited, a thread that ended) fails at once instead of waiting out the timeout.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if alive is not None and not alive():
            raise AssertionError(f"what was to produce {what} ended first; last seen: {_describe(seen)}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout_s:.0f} s for {what}; last seen: {_describe(seen)}")
        time.sleep(every_s)


def _describe(seen: Callable[[], object] | None) -> str:
    if seen is None:
        return "(nothing recorded)"
    try:
        return repr(seen())
    except Exception as exc:  # the description must not hide the timeout
        return f"(could not describe: {exc!r})"


def events_so_far(campaign_dir: Path) -> list[Event]:
    """A campaign's events as another process sees them while it runs (a driver, a job):
    none while its folder is not made yet or a Parquet part is being written (ask again)."""
    try:
        fs, root = open_filesystem(str(campaign_dir / LEDGER_DIR))
        return load_events(fs, root, journal_path(campaign_dir))
    except Exception:
        return []
