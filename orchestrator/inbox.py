"""The campaign's inbox: changes a person injects while a campaign runs (`arborist inject`).

Items are appended to `<campaign_dir>/inbox.yaml`, a hypotheses file like any other, which the
inbox's queue proposer re-reads on every request, ahead of the configured proposers. What can
be checked without the tree is checked here, at once; the rest (applies on the parent, memory)
is checked at admission like every proposal.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from orchestrator.config import ASPECTS, CampaignConfig
from orchestrator.proposers.queue import load_queue
from trials.locks import file_lock
from trials.patch import validate_diff

INBOX_FILE = "inbox.yaml"


class InjectError(ValueError):
    """An injected change that cannot be queued; the message says what to fix."""


def inbox_path(campaign_dir: Path) -> Path:
    return campaign_dir / INBOX_FILE


def inject(
    campaign_dir: Path,
    config: CampaignConfig,
    *,
    hypothesis: str,
    aspect: str | None = None,
    diff: str | None = None,
    param: tuple[str, Any] | None = None,
    item_id: str | None = None,
) -> dict[str, Any]:
    """Append one change to the inbox; returns the item written."""
    if not hypothesis.strip():
        raise InjectError("--hypothesis is empty; say in one sentence what the change does and why")
    if (diff is None) == (param is None):
        raise InjectError("give exactly one of --diff FILE (a code change) or --param NAME=VALUE (a params change)")
    item: dict[str, Any] = {"id": "", "hypothesis": hypothesis.strip()}
    if param is not None:
        name, value = param
        _check_param(config, name, value)
        item.update(aspect=name, params={name: value})
    else:
        assert diff is not None
        if aspect is None or aspect not in ASPECTS:
            raise InjectError(f"a code change needs --aspect, one of: {', '.join(ASPECTS)}")
        problems = validate_diff(
            diff, protected=config.protected, editable=config.editable, max_lines=config.limits.max_diff_lines
        )
        if problems:
            raise InjectError("the diff cannot be a change: " + "; ".join(problems))
        item.update(aspect=aspect, diff=diff if diff.endswith("\n") else diff + "\n")
    path = inbox_path(campaign_dir)
    with file_lock(campaign_dir / ".inbox.lock"):
        items = load_queue(path) if path.exists() else []
        taken = {str(i["id"]) for i in items}
        if item_id is not None and item_id in taken:
            raise InjectError(f"id {item_id!r} is already in {path}; choose another --id")
        item["id"] = item_id or _next_id(taken)
        raw = yaml.safe_load(path.read_text()) if path.exists() else []
        _write_atomically(path, [*(raw or []), item])
    return item


def _check_param(config: CampaignConfig, name: str, value: Any) -> None:
    spec = config.params.get(name)
    if spec is None:
        declared = ", ".join(sorted(config.params)) or "none"
        raise InjectError(f"--param {name}: not a declared hyperparameter (declared: {declared})")
    if spec.type == "choice":
        if value not in (spec.values or []):
            raise InjectError(f"--param {name}={value!r}: not one of {spec.values}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InjectError(f"--param {name}={value!r}: a number is expected")
    assert spec.low is not None and spec.high is not None
    if not spec.low <= value <= spec.high:
        raise InjectError(f"--param {name}={value}: outside its range [{spec.low:g}, {spec.high:g}]")
    if spec.type == "int" and int(value) != value:
        raise InjectError(f"--param {name}={value}: an integer is expected")


def _next_id(taken: set[str]) -> str:
    n = 1
    while f"inject-{n}" in taken:
        n += 1
    return f"inject-{n}"


def _write_atomically(path: Path, items: list[dict[str, Any]]) -> None:
    """Readers (the running campaign) see the old file or the new one, never half of it."""
    text = yaml.safe_dump(items, sort_keys=False, allow_unicode=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".inbox-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_param(text: str) -> tuple[str, Any]:
    """NAME=VALUE, the value read as YAML (so 0.01, 64, true and adam all parse)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise InjectError(f"--param {text!r}: write it as NAME=VALUE, e.g. --param lr=0.003")
    try:
        return name.strip(), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise InjectError(f"--param {text!r}: cannot read the value ({exc})") from exc
