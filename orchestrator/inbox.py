"""The campaign's inbox: changes a person injects while a campaign runs (`arborist inject`),
and verdicts on suspect nodes (`arborist approve`, `arborist reject`).

Items are appended to `<campaign_dir>/inbox.yaml`, a hypotheses file like any other, which the
inbox's queue proposer re-reads on every request, ahead of the configured proposers. What can
be checked without the tree is checked here, at once; the rest (applies on the parent, memory)
is checked at admission like every proposal.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from yaml.emitter import ScalarAnalysis

from orchestrator.admission import Fault, aspect_problem, compact, declared_value, value_fault, value_problem
from orchestrator.config import ASPECTS, CampaignConfig, ParamConfig
from orchestrator.proposers.queue import QueueFileError, load_queue
from trials.locks import file_lock
from trials.patch import validate_diff

INBOX_FILE = "inbox.yaml"
VERDICTS_FILE = "verdicts.jsonl"  # one JSON object a line: node_id, verdict, by, at
VERDICTS = ("approve", "reject")
LOCK_FILE = ".inbox.lock"  # a separate file: the inbox itself is replaced, so a lock on it would not hold

# YAML 1.1 (PyYAML) reads 1e-3 as a string; people write learning rates that way.
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


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
    """Append one change to the inbox; returns the item written.

    Everything is checked before the inbox is touched, so a refused change leaves it as it was.
    """
    item = _item(config, hypothesis=hypothesis, aspect=aspect, diff=diff, param=param)
    if item_id is not None and not item_id.strip():
        raise InjectError("--id is empty; give a short name, or leave --id out for inject-<n>")
    if not campaign_dir.is_dir():
        raise InjectError(f"{campaign_dir} does not exist; pass the folder `arborist run` printed")
    path = inbox_path(campaign_dir)
    # The lock makes read-append-write one step, so two injects at once cannot both append to
    # the same old inbox and lose one item; the campaign only reads, and needs no lock.
    with file_lock(campaign_dir / LOCK_FILE):
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        taken = {str(i["id"]) for i in _queued(path)}
        if item_id is not None and item_id.strip() in taken:
            raise InjectError(f"id {item_id.strip()!r} is already in {path}; choose another --id")
        item = {"id": item_id.strip() if item_id is not None else _next_id(taken), **item}
        _write_atomically(path, _appended(text, item))
    return item


def submit_verdict(campaign_dir: Path, node_id: str, verdict: str) -> dict[str, Any]:
    """Append a person's verdict on a suspect node; the engine carries it out at its next step
    (or at `arborist resume`). Whether the node is suspect is the caller's check, on the tree."""
    if verdict not in VERDICTS:
        raise InjectError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    item = {"node_id": node_id, "verdict": verdict, "by": f"{getpass.getuser()}@{socket.gethostname()}",
            "at": time.time()}
    path = campaign_dir / VERDICTS_FILE
    with file_lock(campaign_dir / LOCK_FILE):
        pending = [v for v in read_verdicts(campaign_dir) if v.get("node_id") == node_id]
        if pending:
            raise InjectError(
                f"{node_id} already has a verdict waiting to be applied ({pending[0].get('verdict')} by "
                f"{pending[0].get('by')}); it takes effect at the campaign's next step or `arborist resume`"
            )
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        _write_atomically(path, text + json.dumps(item, sort_keys=True) + "\n")
    return item


def read_verdicts(campaign_dir: Path) -> list[dict[str, Any]]:
    """Every verdict given, oldest first (the file is replaced whole, so no line is ever half written)."""
    try:
        text = (campaign_dir / VERDICTS_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_diff(path: Path) -> str:
    """The text of a diff file, as is: CRLF line endings are part of what the patch changes."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise InjectError(f"--diff {path} {what}; pass a file holding a unified diff (`git diff > change.diff`)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InjectError(f"--diff {path}: cannot read it ({exc.strerror})") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        raise InjectError(f"--diff {path} is not text (UTF-8); pass a unified diff as `git diff` prints it")
    return text


def parse_param(text: str) -> tuple[str, Any]:
    """NAME=VALUE, the value read as YAML (so 0.01, 1e-3, 64, true and adam all parse)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise InjectError(f"--param {text!r}: write it as NAME=VALUE, e.g. --param lr=0.003")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise InjectError(f"--param {text!r}: cannot read the value ({exc})") from exc
    if isinstance(parsed, str) and _NUMBER.fullmatch(parsed.strip()):
        parsed = float(parsed)
    return name.strip(), parsed


def _item(
    config: CampaignConfig, *, hypothesis: str, aspect: str | None, diff: str | None, param: tuple[str, Any] | None
) -> dict[str, Any]:
    """The item without its id, after every check that needs no inbox."""
    if not hypothesis.strip():
        raise InjectError("--hypothesis is empty; say in one sentence what the change does and why")
    if (diff is None) == (param is None):
        raise InjectError("give exactly one of --diff FILE (a code change) or --param NAME=VALUE (a params change)")
    if param is not None:
        name, value = param
        if aspect is not None and aspect != name:
            raise InjectError(
                f"--aspect is for code changes; a params change is named by its hyperparameter ({name}), "
                "so leave --aspect out"
            )
        return {"aspect": name, "hypothesis": hypothesis.strip(), "params": {name: _checked_value(config, name, value)}}
    assert diff is not None
    problem = "" if aspect is None else aspect_problem(aspect)
    if aspect is None or problem:
        given = f" ({problem})" if problem else ""
        raise InjectError(f"a code change needs --aspect, one of: {', '.join(ASPECTS)}{given}")
    problems = validate_diff(
        diff, protected=config.protected, editable=config.editable, limits=config.limits
    )
    if problems:
        raise InjectError("the diff cannot be a change:\n" + "\n".join(f"  - {p}" for p in problems))
    return {"aspect": aspect, "hypothesis": hypothesis.strip(), "diff": diff if diff.endswith("\n") else diff + "\n"}


def _checked_value(config: CampaignConfig, name: str, value: Any) -> Any:
    """The value as the config declares it (an int for an int, a listed choice as listed)."""
    spec = config.params.get(name)
    if spec is None:
        declared = ", ".join(sorted(config.params)) or "none"
        raise InjectError(f"--param {name}: not a declared hyperparameter (declared: {declared})")
    if spec.type == "choice":
        value = _spelled_choice(spec, value)
    fault = value_fault(spec, value)
    if fault is Fault.OUT_OF_RANGE:
        assert spec.low is not None and spec.high is not None
        raise InjectError(f"--param {name}={value}: outside its range [{compact(spec.low)}, {compact(spec.high)}]")
    if fault is not None:
        raise InjectError(f"--param {name}={value!r}: {value_problem(spec, value, number=compact)}")
    return declared_value(spec, value)


def _spelled_choice(spec: ParamConfig, value: Any) -> Any:
    """The declared choice a value typed on the command line means, else the value as read.

    YAML reads `on` as True and `1` as 1; a declared "on" or "1" is what the person meant.
    """
    if value_fault(spec, value) is None:
        return value
    if isinstance(value, str):
        return value
    spelled = [v for v in spec.values or [] if isinstance(v, str) and _reads_as(v, value)]
    return spelled[0] if len(spelled) == 1 else value


def _reads_as(text: str, value: Any) -> bool:
    try:
        return bool(yaml.safe_load(text) == value)
    except yaml.YAMLError:
        return False


def _queued(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        return load_queue(path)
    except QueueFileError as exc:
        raise InjectError(f"{exc}\nthe inbox was edited by hand and is broken; fix {path} first") from exc


def _next_id(taken: set[str]) -> str:
    n = 1
    while f"inject-{n}" in taken:
        n += 1
    return f"inject-{n}"


def _appended(text: str, item: dict[str, Any]) -> str:
    """The inbox text with the item at its end.

    Appending keeps what a person wrote (comments, layout); when the old text does not end in a
    block list that can take another entry (a flow list `[...]`), the list is written anew.
    """
    if not text.strip():
        return dump_items([item])
    want = [*(yaml.safe_load(text) or []), item]  # a list: load_queue has read this text already
    candidate = (text if text.endswith("\n") else text + "\n") + dump_items([item])
    return candidate if _loads_as(candidate, want) else dump_items(want)


def dump_items(items: list[dict[str, Any]]) -> str:
    """YAML for queue items, diffs as literal blocks (`|`) that read like the diff itself.

    Block style is used only if the text reads back exactly; otherwise YAML's own quoting.
    """
    text = yaml.dump(items, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True)
    if _loads_as(text, items):
        return text
    return yaml.safe_dump(items, sort_keys=False, allow_unicode=True)


def _loads_as(text: str, items: list[dict[str, Any]]) -> bool:
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return bool(loaded == items)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, trailing spaces and tabs included.

    PyYAML refuses block style for a line ending in spaces, which every diff of a blank line
    has (` ` context lines), and for tabs; both are plain content in a literal block. Line
    breaks other than \\n and unprintable characters stay refused: they do not read back as
    written.
    """

    def analyze_scalar(self, scalar: str) -> ScalarAnalysis:
        analysis = super().analyze_scalar(scalar)
        if analysis.multiline and not analysis.allow_block and all(map(_literal_char, scalar)):
            analysis.allow_block = True
        return analysis


def _literal_char(ch: str) -> bool:
    if ch in "\n\t" or " " <= ch <= "~":
        return True
    if ch in "\u2028\u2029\ufeff":  # Unicode line breaks and the byte-order mark
        return False
    return "\xa0" <= ch <= "\ud7ff" or "\ue000" <= ch <= "\ufffd" or ch >= "\U00010000"


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_BlockDumper.add_representer(str, _represent_str)


def _write_atomically(path: Path, text: str) -> None:
    """Readers (the running campaign) see the old file or the new one, never half of it."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644  # mkstemp's 0600 would hide it from others
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".inbox-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
