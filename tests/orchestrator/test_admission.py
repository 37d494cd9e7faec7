"""Admission of oversized and mode-changing diffs, through the search service without Ray."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from orchestrator.campaign import prepare
from orchestrator.config import load_config
from orchestrator.search import FINISHED, SearchService
from tests.toy import bonus_diff, write_config
from trials.runner import run_trial
from trials.spec import TrialSpec


def test_an_oversized_diff_is_rejected_before_the_memory_reads_it_and_a_mode_change_is_noted(
    tmp_path: Path,
) -> None:
    (tmp_path / "huge.diff").write_text(
        "diff --git a/gen.py b/gen.py\nnew file mode 100644\n--- /dev/null\n+++ b/gen.py\n@@ -0,0 +1,100000 @@\n"
        + "".join(f"+x{i} = {i}\n" for i in range(100_000))
    )
    executable = bonus_diff("0.2").replace(
        "diff --git a/model.py b/model.py\n", "diff --git a/model.py b/model.py\nold mode 100644\nnew mode 100755\n"
    )
    queue = tmp_path / "big.yaml"
    queue.write_text(yaml.safe_dump([
        {"id": "huge", "aspect": "data", "hypothesis": "generated features", "diff_file": "huge.diff"},
        {"id": "exec", "aspect": "architecture", "hypothesis": "a larger bonus helps", "diff": executable},
    ], sort_keys=False))
    config = load_config(write_config(tmp_path, search={"proposers": [{"type": "queue", "path": str(queue)}]}))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    slowest = 0.0
    proposals: list[dict[str, object]] = []
    while len(proposals) < 2:
        started = time.perf_counter()
        dispatch = service.suggest()
        slowest = max(slowest, time.perf_counter() - started)
        assert dispatch != FINISHED and isinstance(dispatch, dict), "the campaign ended before both items were screened"
        spec = TrialSpec.from_dict(dispatch["spec"])
        assert service.complete(spec.trial_id, dispatch["token"], run_trial(spec, service.bundle_bytes).to_dict())
        proposals = [e.data for e in service.ledger.load_events() if e.type == "proposal"]
    service.close()

    by_source = {p["change"]["source_id"]: p for p in proposals}  # type: ignore[index]
    rejected = by_source["huge"]
    size = len((tmp_path / "huge.diff").read_bytes())
    assert rejected["verdict"] == "rejected"
    assert rejected["reason"] == (
        f"the diff is {size} bytes, more than limits.max_diff_bytes=200000; propose a smaller change "
        "that alters one aspect"
    )
    # The memory never built an entry for it: no key, no verdict.
    assert rejected["memory_key"] == "" and rejected["memory"] == {}
    assert slowest < 5.0, f"a suggest took {slowest:.1f} s"
    accepted = by_source["exec"]
    assert accepted["verdict"] == "accepted"
    assert accepted["notes"] == ["sets the executable bit of model.py (mode 100644 -> 100755)"]
