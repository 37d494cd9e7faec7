"""The web view in a real headless chromium: `arborist serve` for a real toy campaign, live
updates as its ledger grows, hostile ledger text, the --html file, and a 100,000-node ledger."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from orchestrator import report, serve, view
from orchestrator.config import CampaignConfig
from orchestrator.tree import ROOT_ID, NodeStatus
from tests.web.browser import artifacts_dir, chromium, served, wait_rendered
from tests.web.campaigns import run_toy_campaign, synthetic_campaign

HOSTILE = "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script>"


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> CampaignConfig:
    return run_toy_campaign(tmp_path_factory.mktemp("web-toy"))


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return artifacts_dir(tmp_path)


def signed(value: float) -> str:
    return f"{value:+.4g}"


def append_events(config: CampaignConfig, *events: dict[str, Any]) -> int:
    """Append events to the campaign's journal, as a running campaign does; the last seq."""
    campaign = view.load(config)
    seq = campaign.tree.last_seq
    assert config.campaign_dir is not None
    with open(Path(config.campaign_dir) / "journal.wal", "a", encoding="utf-8") as out:
        for event in events:
            seq += 1
            out.write(json.dumps({"seq": seq, "ts": time.time(), **event}) + "\n")
    return seq


def check_page_matches_ledger(driver: Any, config: CampaignConfig) -> None:
    tree = report.load_tree(config)
    data = report.summary(config, tree)
    assert driver.find_element(By.ID, "node-count").text == f"{len(tree.nodes)} nodes"
    gain = data["incumbent"]["gain_vs_baseline"]
    assert f"Incumbent {tree.incumbent_id}: gain over the baseline {signed(gain['mean'])}" in (
        driver.find_element(By.ID, "incumbent-gain").text)
    # The lineage is the root and the incumbent's chain, each with its ledger status.
    lineage = driver.find_elements(By.CSS_SELECTOR, "li.lineage > .node-row")
    assert [row.get_attribute("data-node") for row in lineage] == [ROOT_ID, *tree.nodes[tree.incumbent_id].chain]
    for row in driver.find_elements(By.CSS_SELECTOR, "#tree .node-row"):
        assert row.get_attribute("data-status") == tree.nodes[row.get_attribute("data-node")].status.value
    # Branches off the lineage, and children past the best few, open on demand: opening each
    # shows the whole tree.
    def every_branch_opened(d: Any) -> bool:
        for button in d.find_elements(By.CSS_SELECTOR, "#tree button.toggle, #tree button.more"):
            if button.text != "−":
                button.click()
        shown = {row.get_attribute("data-node") for row in d.find_elements(By.CSS_SELECTOR, "#tree .node-row")}
        return shown == set(tree.nodes)

    WebDriverWait(driver, 20, poll_frequency=0.2).until(every_branch_opened)
    for row in driver.find_elements(By.CSS_SELECTOR, "#tree .node-row"):
        assert row.get_attribute("data-status") == tree.nodes[row.get_attribute("data-node")].status.value
    decided = [d for d in data["decisions"] if d["gain"] is not None]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#forest circle.effect")) == len(decided)
    series = driver.find_elements(By.CSS_SELECTOR, "#controls path.series")
    assert [s.get_attribute("data-node") for s in series] == [r["node_id"] for r in data["controls"]["nodes"]]
    ablation = driver.find_elements(By.CSS_SELECTOR, "#ablation-table tr")
    assert len(ablation) == len(data["integration"]["ablation"]) + 1 and data["integration"]["ablation"]
    costs = driver.find_element(By.ID, "costs-table").text
    assert f"{round(tree.trial_seconds / 3600, 3):g}" in costs
    assert len(driver.find_elements(By.CSS_SELECTOR, "#incumbent-plot svg circle")) == 2 * len(
        [r for r in view.load(config).tree.incumbent_changes if r["node_id"] in tree.nodes])
    table_rows = driver.find_elements(By.CSS_SELECTOR, "#nodes-table tr")
    assert len(table_rows) == len(tree.nodes) + 1


def click_node(driver: Any, node_id: str) -> str:
    driver.find_element(By.CSS_SELECTOR, f"#tree .node-row[data-node='{node_id}'] .id").click()
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#detail table.trials"))
    assert driver.find_element(By.CSS_SELECTOR, "#detail h2").text == f"Node {node_id}"
    return str(driver.find_element(By.ID, "detail").text)


def test_served_page_shows_the_campaign_and_follows_its_ledger(toy: CampaignConfig, shots: Path) -> None:
    tree = report.load_tree(toy)
    failed = next(n for n in tree.nodes.values() if n.status is NodeStatus.FAILED)
    code = next(n for n in tree.nodes.values() if n.change and n.change.kind == "code" and n.origin == "search")
    with served(toy) as url, chromium() as driver:
        driver.get(url)
        wait_rendered(driver, 30, tree.last_seq)
        check_page_matches_ledger(driver, toy)
        driver.save_screenshot(str(shots / "view-toy.png"))
        # A node's evidence, its change and its trials; a failed trial's log tail.
        detail = click_node(driver, failed.node_id)
        assert (failed.decision or {})["reason"] in detail
        failed_trial = next(r for r in tree.node_trials(failed.node_id) if r.result and r.result.log_tail)
        tail = failed_trial.result.log_tail.strip().splitlines()[-1]  # type: ignore[union-attr]
        assert tail in driver.find_element(By.CSS_SELECTOR, "#detail pre.log").text
        click_node(driver, code.node_id)
        assert code.change is not None
        diff = driver.find_element(By.CSS_SELECTOR, "#detail pre.diff").text
        assert diff.strip() == code.change.diff.strip()
        rows = driver.find_elements(By.CSS_SELECTOR, "#detail table.trials tr")
        assert len(rows) == len(code.seeds) + 1
        driver.save_screenshot(str(shots / "view-toy-node.png"))
        # The campaign goes on: a new node with an LLM-written, hostile hypothesis. The page
        # polls, sees it and shows its text as text.
        change = {"kind": "code", "aspect": "data", "hypothesis": HOSTILE, "proposer": "llm",
                  "diff": HOSTILE, "source_id": "hostile"}
        node_id = f"n{len(tree.nodes)}"
        seq = append_events(toy, {"type": "node_created", "data": {
            "node_id": node_id, "parent_id": ROOT_ID, "change": change, "commit": tree.root.commit,
            "params": tree.root.params, "origin": "search"}})
        wait_rendered(driver, 30, seq)
        assert driver.find_element(By.ID, "node-count").text == f"{len(tree.nodes) + 1} nodes"
        row = driver.find_element(By.CSS_SELECTOR, f"#tree .node-row[data-node='{node_id}']")
        assert HOSTILE in row.text and row.get_attribute("data-status") == "OPEN"
        click_node(driver, node_id)
        assert HOSTILE in driver.find_element(By.ID, "detail").text
        assert driver.execute_script("return window.pwned === undefined")
        assert not driver.find_elements(By.CSS_SELECTOR, "#app img, #app script")
        driver.save_screenshot(str(shots / "view-toy-live.png"))


def test_the_server_replays_only_a_changed_ledger_and_serves_nothing_else(toy: CampaignConfig) -> None:
    source = serve.CampaignSource(toy)
    first = source.current()[1]
    assert source.current()[1] is first and source.replays == 1
    done = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "serve", str(toy.campaign_dir), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert done.stdout is not None
        line = done.stdout.readline()
        url = line.split(" at ")[1].split(" ")[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/view") as response:
            assert json.load(response)["node_total"] == len(report.load_tree(toy).nodes)
        with urllib.request.urlopen(url + "api/children?node=n0&offset=0&limit=2") as response:
            page = json.load(response)
            assert len(page["rows"]) == 2 and page["total"] == len(report.load_tree(toy).root.children)
        for path, status in (("assets/../campaign.json", 404), ("assets/%2e%2e/campaign.json", 404),
                             ("campaign.json", 404), ("api/node?id=n999", 404), ("api/nodes?offset=x", 400)):
            with pytest.raises(urllib.error.HTTPError) as failure:
                urllib.request.urlopen(url + path)
            assert failure.value.code == status, path
            assert "error" in json.load(failure.value)
    finally:
        done.terminate()
        done.wait(10)


def test_the_html_file_renders_the_same_from_file_url(toy: CampaignConfig, tmp_path: Path, shots: Path) -> None:
    out = tmp_path / "view.html"
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "report", str(toy.campaign_dir), "--html",
                           str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert "<script src=" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    with chromium() as driver:
        driver.get(out.as_uri())
        wait_rendered(driver, 30, report.load_tree(toy).last_seq)
        check_page_matches_ledger(driver, toy)
        assert "Left out of this file: 0 nodes of the tree" in driver.find_element(By.ID, "left-out").text
        tree = report.load_tree(toy)
        failed = next(n for n in tree.nodes.values() if n.status is NodeStatus.FAILED)
        assert (failed.decision or {})["reason"] in click_node(driver, failed.node_id)
        driver.save_screenshot(str(shots / "view-toy-file.png"))


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CampaignConfig]:
    yield synthetic_campaign(tmp_path_factory.mktemp("web-huge"), 100_000)


@pytest.mark.long
def test_a_100000_node_ledger_renders_from_aggregates(huge: CampaignConfig, tmp_path: Path, shots: Path) -> None:
    tree = report.load_tree(huge)
    assert len(tree.nodes) == 100_000
    with served(huge) as url, chromium() as driver:
        driver.get(url)
        wait_rendered(driver, 300, tree.last_seq)
        assert driver.find_element(By.ID, "node-count").text == "100000 nodes"
        elements = driver.execute_script("return document.getElementsByTagName('*').length")
        assert elements < 10_000, f"{elements} DOM elements for a 100,000-node tree"
        root_rows = driver.find_elements(By.CSS_SELECTOR, "ul.children[data-parent='n0'] > li > .node-row")
        more = driver.find_element(By.CSS_SELECTOR, "button.more[data-parent='n0']")
        more.click()
        WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(
            By.CSS_SELECTOR, "ul.children[data-parent='n0'] > li > .node-row")) > len(root_rows))
        assert driver.find_elements(By.CSS_SELECTOR, "#forest circle.effect")
        assert driver.find_elements(By.CSS_SELECTOR, "#controls path.series")
        driver.save_screenshot(str(shots / "view-100k.png"))
    out = tmp_path / "huge.html"
    serve.write_html(huge, out)
    assert out.stat().st_size < 20_000_000
    with chromium() as driver:
        driver.get(out.as_uri())
        wait_rendered(driver, 120, tree.last_seq)
        assert driver.find_element(By.ID, "node-count").text == "100000 nodes"
        assert "Left out of this file" in driver.find_element(By.ID, "left-out").text
        driver.save_screenshot(str(shots / "view-100k-file.png"))
