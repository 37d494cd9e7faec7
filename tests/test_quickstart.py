"""The quickstart campaign end to end on the shared local Ray, with a smaller budget.

Each change in examples/digits/hypotheses.yaml must be decided for the right reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator import campaign, reader, report
from orchestrator.config import load_config
from orchestrator.proposers.queue import load_queue
from tests.web.browser import artifacts_dir, chromium, served, wait_rendered

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.slow]


def test_quickstart_decides_every_change_for_the_right_reason(tmp_path: Path) -> None:
    config = load_config(ROOT / "configs" / "quickstart.yaml")
    config = config.model_copy(update={
        "campaign_dir": tmp_path / "quickstart",
        "ray": config.ray.model_copy(update={"scratch_dir": tmp_path / "quickstart" / "scratch"}),
        "budget": config.budget.model_copy(update={"max_trials": 45}),
        "search": config.search.model_copy(update={"proposers": [
            config.search.proposers[0],
            config.search.proposers[1].model_copy(update={"max_proposals": 2}),
        ]}),
    })
    campaign.run(config, setup=campaign.prepare(config, None))
    tree = report.load_tree(config)
    summary = report.summary(config, tree)
    queue = {d["source_id"]: d for d in summary["decisions"] if d["proposer"] == "queue"}

    improvement = queue["standardize-inputs"]
    assert improvement["status"] == "PROMOTED", improvement
    assert improvement["ci_low"] > 0
    assert queue["independent-init-stream"]["status"] == "PRUNED"  # neutral: no significant gain
    harmful = queue["quarter-of-data"]
    assert harmful["status"] == "PRUNED" and "worse than the parent" in harmful["reason"], harmful
    broken = queue["lr-exp-decay"]
    assert broken["status"] == "FAILED" and "stage run" in broken["reason"], broken
    rejected = {p["source_id"]: p["reason"] for p in summary["rejected_proposals"]}
    assert "protected path evaluate.py" in rejected["tta-shifted-eval"]
    # Each of the five hypotheses is decided or rejected, whatever the machine's speed: the budget is
    # in trials, and the evaluator-touching one is rejected when the campaign starts, before any trial.
    hypotheses = [item["id"] for item in load_queue(ROOT / "examples" / "digits" / "hypotheses.yaml")]
    assert len(hypotheses) == 5
    for source in hypotheses:
        assert source in rejected or queue[source]["status"] in ("PROMOTED", "PRUNED", "FAILED"), source
    events = reader.load_events(config)
    first_trial = next(e.seq for e in events if e.type == "trial_started")
    tta = next(e for e in events if e.type == "proposal" and e.data["change"]["source_id"] == "tta-shifted-eval")
    assert tta.seq < first_trial
    # The winner carries the improvement, measured by the frozen evaluator on held-out data.
    incumbent = summary["incumbent"]
    assert any(link["node_id"] == improvement["node_id"] for link in incumbent["chain"])
    assert incumbent["gain_vs_baseline"]["ci_low"] > 0
    assert not summary["metrics_self_reported"]
    # Every trial ran inside the sandbox (scripts/test installs bubblewrap), evaluate in its room.
    assert {r.result.sandbox for r in tree.trials.values() if r.result is not None} == {"bwrap"}
    assert len(summary["fingerprints"]) == 1
    notebook = report.notebook(config, tree)
    assert "standardizing each pixel" in notebook.lower() and "AttributeError" in notebook
    # The report shows the control chart and, for every decision on evidence, when its blocks ran.
    assert "## Controls and drift" in notebook and "![control chart](control_chart.svg)" in notebook
    assert summary["controls"]["nodes"] and summary["controls"]["nodes"][0]["controls"] >= config.seeds.baseline
    for decision in (queue["standardize-inputs"], queue["independent-init-stream"], queue["quarter-of-data"]):
        blocks = decision["blocks"]
        assert blocks and blocks["count"] >= 1 and blocks["max_apart"] <= 2 * (config.search.max_open_nodes + 1) + 2 * (
            config.ray.max_concurrent
        ), decision
        assert f"{blocks['count']} block" in notebook
    assert (report.write_notebook(config, tree).parent / "control_chart.svg").read_text().startswith("<svg")

    # The web view shows it in a real browser: the four decided hypotheses in the tree with their
    # verdicts, the evaluator-touching one among the rejected proposals.
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with served(config) as url, chromium() as driver:
        driver.get(url)
        wait_rendered(driver, timeout=60, seq=tree.last_seq)
        wanted = {queue[source]["node_id"] for source in queue}

        def opened(d: Any) -> dict[str, str] | bool:  # branches load on demand: open until all are shown
            for button in d.find_elements(By.CSS_SELECTOR, "#tree button.toggle, #tree button.more"):
                if button.text != "−":
                    button.click()
            rows = {row.get_attribute("data-node"): row.get_attribute("data-status")
                    for row in d.find_elements(By.CSS_SELECTOR, "#tree .node-row")}
            return rows if wanted <= set(rows) else False

        shown = WebDriverWait(driver, 30, poll_frequency=0.2).until(opened)
        for source in ("standardize-inputs", "independent-init-stream", "quarter-of-data", "lr-exp-decay"):
            assert shown.get(queue[source]["node_id"]) == queue[source]["status"], (source, shown)
        rejected_rows = driver.find_element(By.ID, "rejected-table").text
        assert "tta-shifted-eval" in rejected_rows and "protected path evaluate.py" in rejected_rows
        driver.save_screenshot(str(artifacts_dir(tmp_path) / "view-quickstart.png"))
