"""A real headless chromium for the web view's tests and benchmark, driven by selenium through
Debian's chromedriver (scripts/_env.sh installs both), and the screenshots kept as artifacts."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from orchestrator import serve
from orchestrator.config import CampaignConfig

CHROMIUM_MISSING = (
    "chromium and chromedriver are needed for the web view's tests: apt-get install -y chromium chromium-driver "
    "(./scripts/test installs them as root)"
)


def find(name: str, *more: str) -> str:
    for candidate in (name, *more):
        path = shutil.which(candidate)
        if path:
            return path
    raise RuntimeError(CHROMIUM_MISSING)


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = find("chromium", "chromium-browser", "google-chrome")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--allow-file-access-from-files"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(find("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def served(config: CampaignConfig) -> Iterator[str]:
    """`arborist serve`'s server on a free loopback port, serving from a thread."""
    server = serve.make_server(config, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield serve.url_of(server)
    finally:
        server.shutdown()
        server.server_close()


def wait_rendered(driver: webdriver.Chrome, timeout: float, seq: int | None = None) -> int:
    """Until the page has rendered (at ledger event `seq`, when given); the event it shows."""
    def rendered(d: webdriver.Chrome) -> str | bool:
        value = d.execute_script("return document.body.dataset.rendered || ''")
        return value if value and (seq is None or int(value) == seq) else False

    return int(WebDriverWait(driver, timeout, poll_frequency=0.1).until(rendered))


def artifacts_dir(default: Path) -> Path:
    """Where screenshots go: $ARBORIST_TEST_ARTIFACTS, else the test's tmp_path."""
    folder = Path(os.environ.get("ARBORIST_TEST_ARTIFACTS") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
