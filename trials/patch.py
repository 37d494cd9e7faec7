"""Validate a proposed code change (a unified diff) before any compute is spent on it.

Pure text checks, size first: a diff within the limits, of regular files only (every mode line
read as git reads it), touching only what a proposer may change (editable files, never the
frozen evaluator). Whether it applies is checked separately against the parent's code with
`CampaignRepo.check_diff`.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Protocol

_CHANGED = re.compile(r"^[+-]", re.MULTILINE)
_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
# Every header line through which git reads a file mode (git parses the number with strtoul, so
# "0120000" and "  120000" are a link as much as "120000" is).
_MODE_LINE = re.compile(r"^(old mode|new mode|new file mode|deleted file mode) ?(.*)$")
_INDEX_MODE = re.compile(r"^index [0-9a-fA-F]+\.\.[0-9a-fA-F]+ ?(.*)$")
_OCTAL = re.compile(r"^\s*\+?([0-7]+)\s*$")
_REGULAR, _EXECUTABLE, _SYMLINK, _GITLINK = 0o100644, 0o100755, 0o120000, 0o160000
# Extended headers that name a path (git also accepts the old "rename old/new" spelling).
_PATH_HEADERS = ("rename from ", "rename to ", "rename old ", "rename new ", "copy from ", "copy to ")
_GLOB_CHARS = frozenset("*?[")
_RESERVED_TOP = ".arborist"  # node commits keep their params there


class DiffLimits(Protocol):
    """The size a diff may have (the campaign config's `limits` section has these fields)."""

    max_diff_bytes: int
    max_diff_lines: int
    max_diff_line_chars: int


@dataclass
class DiffReport:
    problems: list[str] = field(default_factory=list)  # why the diff is unacceptable; empty: acceptable
    notes: list[str] = field(default_factory=list)  # allowed but worth a reader's eye (an executable bit)


@dataclass
class _Scan:
    paths: list[str] = field(default_factory=list)  # as git apply resolves them (-p1)
    hunks: int = 0
    changed_lines: int = 0
    binary: bool = False
    modes: list[tuple[str, str, str]] = field(default_factory=list)  # (path, header, value as written)


def touched_paths(diff: str) -> list[str]:
    """Paths a diff creates, edits, deletes or renames (from and to), sorted, relative."""
    return sorted(set(_scan(diff).paths))


def size_problem(diff: str, limits: DiffLimits) -> str:
    """Why the diff is too large to look at any further ("" when it is not).

    Linear in the diff's length, and C-speed passes until the byte limit is known to hold (the
    exact count of changed lines then reads at most max_diff_bytes), so a hostile diff of
    megabytes or of 100,000 lines is turned away before any parser, memory key or git reads it.
    """
    size = len(diff.encode("utf-8", "surrogatepass"))
    if size > limits.max_diff_bytes:
        return (
            f"the diff is {size} bytes, more than limits.max_diff_bytes={limits.max_diff_bytes}; "
            "propose a smaller change that alters one aspect"
        )
    lengths = [len(line) for line in diff.split("\n")]
    longest = max(lengths)
    if longest > limits.max_diff_line_chars:
        return (
            f"line {lengths.index(longest) + 1} of the diff is {longest} characters long, more than "
            f"limits.max_diff_line_chars={limits.max_diff_line_chars}; source lines that long are "
            "generated data, generate it at run time instead"
        )
    # Every changed line starts with + or -: their count bounds the changed lines from above, so
    # the exact count (a full scan) is needed only when the bound is over the limit.
    if len(lengths) > limits.max_diff_lines and len(_CHANGED.findall(diff)) > limits.max_diff_lines:
        changed = _scan(diff).changed_lines
        if changed > limits.max_diff_lines:
            return (
                f"the diff changes {changed} lines, more than limits.max_diff_lines={limits.max_diff_lines}; "
                "propose a smaller change that alters one aspect"
            )
    return ""


def validate_diff(diff: str, *, protected: list[str], editable: list[str] | None, limits: DiffLimits) -> list[str]:
    """Problems that make a diff unacceptable as one change; an empty list means acceptable."""
    return inspect_diff(diff, protected=protected, editable=editable, limits=limits).problems


def inspect_diff(diff: str, *, protected: list[str], editable: list[str] | None, limits: DiffLimits) -> DiffReport:
    """The diff's problems (size first, then its form, modes and paths) and its notes.

    protected and editable entries are files ("train.py"), folders ("data/" or "data") or
    fnmatch globs ("configs/*.yaml"); absolute protected entries live outside the project and
    cannot be touched by a diff at all.
    """
    report = DiffReport()
    if not diff.strip():
        report.problems.append(
            "the diff is empty; propose a unified diff (as printed by `git diff`) that makes one change"
        )
        return report
    too_large = size_problem(diff, limits)
    if too_large:
        report.problems.append(too_large)
        return report
    try:
        diff.encode()
    except UnicodeEncodeError as exc:
        report.problems.append(
            f"character {exc.start + 1} of the diff (U+{ord(diff[exc.start]):04X}) cannot be written as "
            "UTF-8, so git could not read the patch; send the diff as plain UTF-8 text"
        )
        return report
    scan = _scan(diff)
    if not scan.paths:
        if scan.hunks:
            report.problems.append(
                "the diff has hunks (@@ lines) but no file headers; start each file with "
                "`--- a/<path>` and `+++ b/<path>` lines, as `git diff` prints them"
            )
        else:
            report.problems.append(
                "this is not a unified diff: no `--- a/<path>` / `+++ b/<path>` file headers and no "
                "@@ hunks were found; propose the change as the output of `git diff`"
            )
        return report
    if scan.binary:
        report.problems.append(
            "the diff contains a binary patch; changes must be text diffs of source files, "
            "generate data at run time instead of committing it"
        )
    _judge_modes(scan.modes, report)
    for path in sorted(set(scan.paths)):
        report.problems.extend(_path_problems(path, protected, editable))
    return report


def diff_notes(diff: str) -> list[str]:
    """What an acceptable diff does that a reader should know of (an executable bit set)."""
    report = DiffReport()
    _judge_modes(_scan(diff).modes, report)
    return report.notes


def _judge_modes(modes: list[tuple[str, str, str]], report: DiffReport) -> None:
    """Regular files only: a link could point outside the project or at a protected file, a
    gitlink pulls in another repository; an executable bit is allowed but said."""
    old: dict[str, int] = {}
    for path, header, written in modes:
        octal = _OCTAL.match(written)
        if octal is None:
            report.problems.append(
                f"`{header} {written}` for {path} is not a file mode git can read; "
                "edit regular files only (mode 100644, or 100755 for executables)"
            )
            continue
        mode = int(octal.group(1), 8)
        if mode == _SYMLINK:
            report.problems.append(
                f"`{header} {written}` makes {path} a symbolic link; links could point outside the "
                "project or at protected files, so edit regular files only"
            )
        elif mode == _GITLINK:
            report.problems.append(
                f"`{header} {written}` makes {path} a gitlink (a submodule); a change may not pull "
                "in another repository, edit the project's own files"
            )
        elif mode not in (_REGULAR, _EXECUTABLE):
            report.problems.append(
                f"`{header} {written}` gives {path} mode {mode:o}; only regular files are allowed "
                "(mode 100644, or 100755 for executables)"
            )
        elif header == "old mode":
            old[path] = mode
        elif header == "new mode" and old.get(path, mode) != mode:
            verb = "sets" if mode == _EXECUTABLE else "clears"
            report.notes.append(f"{verb} the executable bit of {path} (mode {old[path]:o} -> {mode:o})")
        elif header == "new file mode" and mode == _EXECUTABLE:
            report.notes.append(f"creates {path} as an executable (mode {mode:o})")


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
    current = ""  # the file the latest `diff --git` header names: what its mode lines apply to
    # Lines end at "\n" alone, as git reads them: str.splitlines would also split at \f, \x1c or
    # U+2028, so a line git reads as content could look like a hunk header here and hide the
    # file headers that follow it.
    for line in diff.split("\n"):
        if old_left > 0 or new_left > 0:
            tag = line[:1]
            # Inside a hunk: its header's line counts say where it ends, so a removed line
            # that reads "--- x" is not mistaken for a file header.
            if tag in (" ", "", "\r"):
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
        line = line.rstrip("\r")  # git reads a CRLF header as the same header
        hunk = _HUNK.match(line)
        if hunk:
            scan.hunks += 1
            old_left = int(hunk.group(1)) if hunk.group(1) is not None else 1
            new_left = int(hunk.group(2)) if hunk.group(2) is not None else 1
        elif line.startswith("diff --git "):
            named = [_strip_prefix(p) for p in _git_header_paths(line[11:])]
            scan.paths.extend(named)
            current = named[-1]
        elif line.startswith(("--- ", "+++ ")):
            raw = _unquote(line[4:].split("\t", 1)[0].rstrip())
            if raw != "/dev/null":
                scan.paths.append(_strip_prefix(raw))
        elif line.startswith(_PATH_HEADERS):
            scan.paths.append(_unquote(line.split(" ", 2)[2].rstrip()))
        elif line.startswith("GIT binary patch") or (line.startswith("Binary files ") and line.endswith(" differ")):
            scan.binary = True
        elif mode := _MODE_LINE.match(line):
            scan.modes.append((current or "?", mode.group(1), mode.group(2)))
        elif (index := _INDEX_MODE.match(line)) and index.group(1):  # "index a..b" keeps the mode
            scan.modes.append((current or "?", "index", index.group(1)))
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
    if ' "' in rest:
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
