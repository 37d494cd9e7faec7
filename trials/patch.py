"""Validate a proposed code change (a unified diff) before any compute is spent on it.

Pure text checks: which paths a diff touches, and whether it stays within what a proposer may
change (editable files, never the frozen evaluator). Whether it applies is checked separately
against the parent's code with `CampaignRepo.check_diff`.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
# Creating a link, turning a file into one, or retargeting one (its index line carries the mode).
_SYMLINK = re.compile(r"^(?:new file mode|new mode) 120000\b|^index \S+ 120000$")
_GLOB_CHARS = frozenset("*?[")
_RESERVED_TOP = ".arborist"  # node commits keep their params there


@dataclass
class _Scan:
    paths: list[str] = field(default_factory=list)  # as git apply resolves them (-p1)
    hunks: int = 0
    changed_lines: int = 0
    binary: bool = False
    symlink: bool = False


def touched_paths(diff: str) -> list[str]:
    """Paths a diff creates, edits, deletes or renames (from and to), sorted, relative."""
    return sorted(set(_scan(diff).paths))


def validate_diff(diff: str, *, protected: list[str], editable: list[str] | None, max_lines: int) -> list[str]:
    """Problems that make a diff unacceptable as one change; an empty list means acceptable.

    protected and editable entries are files ("train.py"), folders ("data/" or "data") or
    fnmatch globs ("configs/*.yaml"); absolute protected entries live outside the project and
    cannot be touched by a diff at all.
    """
    if not diff.strip():
        return ["the diff is empty; propose a unified diff (as printed by `git diff`) that makes one change"]
    scan = _scan(diff)
    if not scan.paths:
        if scan.hunks:
            return [
                "the diff has hunks (@@ lines) but no file headers; start each file with "
                "`--- a/<path>` and `+++ b/<path>` lines, as `git diff` prints them"
            ]
        return [
            "this is not a unified diff: no `--- a/<path>` / `+++ b/<path>` file headers and no "
            "@@ hunks were found; propose the change as the output of `git diff`"
        ]
    problems: list[str] = []
    if scan.binary:
        problems.append(
            "the diff contains a binary patch; changes must be text diffs of source files, "
            "generate data at run time instead of committing it"
        )
    if scan.symlink:
        problems.append(
            "the diff creates or changes a symbolic link; links could point outside the project "
            "or at protected files, so edit regular files only"
        )
    for path in sorted(set(scan.paths)):
        problems.extend(_path_problems(path, protected, editable))
    if scan.changed_lines > max_lines:
        problems.append(
            f"the diff changes {scan.changed_lines} lines, more than the limit of {max_lines}; "
            "propose a smaller change that alters one aspect"
        )
    return problems


def matches_entry(path: str, entry: str) -> bool:
    """Whether a relative path is the entry, lies inside the entry folder, or matches its glob."""
    entry = entry.strip()
    while entry.startswith("./"):
        entry = entry[2:]
    entry = entry.rstrip("/")
    if not entry or os.path.isabs(entry):
        return False
    if path == entry or path.startswith(entry + "/"):
        return True
    if _GLOB_CHARS & set(entry):
        return fnmatch.fnmatchcase(path, entry) or fnmatch.fnmatchcase(path, entry + "/*")
    return False


def _path_problems(path: str, protected: list[str], editable: list[str] | None) -> Iterable[str]:
    parts = PurePosixPath(path).parts
    if path.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", path):
        yield (f"path {path} is absolute; paths in a diff are relative to the project root (`a/<path>`, `b/<path>`)")
        return
    if ".." in parts:
        yield f"path {path} climbs out of the project with '..'; edit files inside the project only"
        return
    if ".git" in parts:
        yield f"path {path} is inside .git/; a change may edit project files, not git's metadata"
        return
    if parts and parts[0] == _RESERVED_TOP:
        yield (
            f"path {path} is inside {_RESERVED_TOP}/, which arborist manages (node params); "
            "change hyperparameters with a params change instead"
        )
        return
    if any(matches_entry(path, entry) for entry in protected):
        yield (
            f"touches protected path {path} (protected: {', '.join(protected)}); the evaluation "
            "code and data are frozen, change the training code instead"
        )
    elif editable is not None and not any(matches_entry(path, entry) for entry in editable):
        yield (
            f"touches {path}, which is not editable (editable: {', '.join(editable) or 'none'}); "
            "limit the change to those files"
        )


def _scan(diff: str) -> _Scan:
    scan = _Scan()
    old_left = new_left = 0
    for line in diff.splitlines():
        if old_left > 0 or new_left > 0:
            tag = line[:1]
            # Inside a hunk: its header's line counts say where it ends, so a removed line
            # that reads "--- x" is not mistaken for a file header.
            if tag in (" ", ""):
                old_left, new_left = old_left - 1, new_left - 1
                continue
            if tag == "-":
                old_left -= 1
                scan.changed_lines += 1
                continue
            if tag == "+":
                new_left -= 1
                scan.changed_lines += 1
                continue
            if tag == "\\":  # "\ No newline at end of file"
                continue
            old_left = new_left = 0  # a truncated hunk; read the line as a header
        hunk = _HUNK.match(line)
        if hunk:
            scan.hunks += 1
            old_left = int(hunk.group(1)) if hunk.group(1) is not None else 1
            new_left = int(hunk.group(2)) if hunk.group(2) is not None else 1
        elif line.startswith("diff --git "):
            scan.paths.extend(_strip_prefix(p) for p in _git_header_paths(line[11:]))
        elif line.startswith(("--- ", "+++ ")):
            raw = _unquote(line[4:].split("\t", 1)[0].rstrip())
            if raw != "/dev/null":
                scan.paths.append(_strip_prefix(raw))
        elif line.startswith(("rename from ", "rename to ", "copy from ", "copy to ")):
            scan.paths.append(_unquote(line.split(" ", 2)[2]))
        elif line.startswith("GIT binary patch") or (line.startswith("Binary files ") and line.endswith(" differ")):
            scan.binary = True
        elif _SYMLINK.match(line):
            scan.symlink = True
    return scan


def _strip_prefix(raw: str) -> str:
    # git apply strips one leading component (-p1): "a/x.py" -> "x.py". An absolute path is
    # kept whole so that it is reported as what it is.
    if raw.startswith("/") or "/" not in raw:
        return raw
    return raw.split("/", 1)[1]


def _git_header_paths(rest: str) -> list[str]:
    """The two paths of `diff --git a/x b/y`, which may be C-quoted or contain spaces."""
    if rest.startswith('"'):
        first, tail = _take_quoted(rest)
        tail = tail.lstrip(" ")
        second = _take_quoted(tail)[0] if tail.startswith('"') else tail
        return [first, second]
    if '"' in rest:
        head, quoted = rest.split(' "', 1)
        return [head, _take_quoted('"' + quoted)[0]]
    # "a/P b/P": when both sides are the same path, split exactly in the middle.
    half = (len(rest) - 1) // 2
    if len(rest) % 2 == 1 and rest[half] == " " and rest[2:half] == rest[half + 3 :]:
        return [rest[:half], rest[half + 1 :]]
    if " b/" in rest:
        head, tail = rest.split(" b/", 1)
        return [head, "b/" + tail]
    return rest.split(" ", 1)


def _take_quoted(text: str) -> tuple[str, str]:
    """Split a leading C-quoted string (as git writes unusual names) from the rest."""
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return _unquote(text[: i + 1]), text[i + 1 :]
        i += 1
    return _unquote(text), ""


_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def _unquote(text: str) -> str:
    if not (len(text) >= 2 and text.startswith('"') and text.endswith('"')):
        return text
    body = text[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567" and re.match(r"[0-7]{3}", body[i + 1 : i + 4]):
                out.append(int(body[i + 1 : i + 4], 8))
                i += 4
                continue
            out.append(_ESCAPES.get(nxt, ord(nxt)))
            i += 2
            continue
        out.extend(ch.encode())
        i += 1
    return out.decode(errors="replace")
