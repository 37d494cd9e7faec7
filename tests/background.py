"""A campaign run in a thread, so a test can act on it while it runs (kill a worker, forge a
result, kill the tree actor) and then read how it ended."""

from __future__ import annotations

import threading
from typing import Any

from orchestrator import campaign
from orchestrator.config import CampaignConfig

JOIN_S = 600.0  # a backstop: the test's own waits say what hung


class CampaignThread:
    """`campaign.run(config, **options)` in a thread; `outcome` holds its summary or its error."""

    def __init__(self, config: CampaignConfig, **options: Any) -> None:
        self.outcome: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(config, options))
        self._thread.start()

    def _run(self, config: CampaignConfig, options: dict[str, Any]) -> None:
        try:
            self.outcome["summary"] = campaign.run(config, **options)
        except Exception as exc:  # the test reads it from `summary()`
            self.outcome["error"] = exc

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def summary(self) -> dict[str, Any]:
        """Wait for the campaign to end; its summary, or the error it ended with raised."""
        self._thread.join(timeout=JOIN_S)
        assert not self._thread.is_alive(), "the campaign did not end"
        assert "error" not in self.outcome, self.outcome.get("error")
        summary: dict[str, Any] = self.outcome["summary"]
        return summary
