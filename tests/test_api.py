"""The README's Python example, run verbatim against a small campaign on the shared local Ray."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

from tests.toy import write_config

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.usefixtures("ray_session")]


def readme_example() -> str:
    """The first ```python block of the README's "From Python" section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### From Python"):]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "README.md's From Python section has no ```python block"
    return match.group(1)


def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    write_config(tmp_path, budget={"max_trials": 16}, integration={"enabled": False})
    printed = io.StringIO()
    namespace: dict[str, object] = {}
    cwd = Path.cwd()
    os.chdir(tmp_path)  # the example's relative paths: campaign.yaml, runs/demo
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(readme_example(), "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    summary, status, tables = namespace["summary"], namespace["status"], namespace["tables"]
    assert summary.phase == "done" and summary.report == tmp_path / "runs" / "demo" / "report.md"  # type: ignore[attr-defined]
    assert status["phase"] == "done" and status["trials_spent"] >= 3  # type: ignore[index]
    trials = namespace["trials"]
    assert len(trials) == tables.trials.num_rows >= 3  # type: ignore[arg-type, attr-defined]
    assert tables.nodes.num_rows == sum(status["counts"]["nodes"].values())  # type: ignore[attr-defined, index]
    assert f"{len(trials)} trials;" in printed.getvalue()  # type: ignore[arg-type]
