"""Protected definitions: a function or class inside a file that changes may otherwise edit.

A self-reported project trains and scores itself in one file, so protecting the whole file
would forbid every change; `protected: ["train.py::evaluate"]` freezes only the definition that
computes the metric. A definition is compared by its syntax tree with docstrings dropped
(comments are not in the tree), so reformatting, comments and edits elsewhere in the file pass,
while any change to what the definition computes, its removal or its renaming does not.
"""

from __future__ import annotations

import ast
import copy
import hashlib
from collections.abc import Iterable
from pathlib import Path

from trials.gitutil import run_git
from trials.patch import touched_paths
from trials.worktree import CampaignRepo

SEPARATOR = "::"
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def is_definition(entry: str) -> bool:
    """Whether a `protected` entry names a definition (file::name) rather than a path."""
    return SEPARATOR in entry


def split_entry(entry: str) -> tuple[str, str]:
    """(file, qualified name) of a definition entry: "train.py::Evaluator.score" -> ("train.py", "Evaluator.score")."""
    path, _, qualname = entry.partition(SEPARATOR)
    return path.strip(), qualname.strip()


def entry_problem(entry: str) -> str:
    """What is wrong with the spelling of a definition entry ("" when nothing)."""
    path, qualname = split_entry(entry)
    if not path.endswith(".py"):
        return f"{path or '(empty)'} is not a Python file; a definition entry is FILE.py::NAME"
    if not qualname or not all(part.isidentifier() for part in qualname.split(".")):
        return f"{qualname or '(empty)'} is not a qualified name; write a function or class, methods through dots"
    return ""


def find_definition(source: str, qualname: str) -> ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | None:
    """The definition a qualified name names at module level (methods through classes), or None.

    Raises SyntaxError when the source does not parse. When a name is defined twice, the last
    definition is the one Python binds, so it is the one protected.
    """
    body: list[ast.stmt] = ast.parse(source).body
    found = None
    for part in qualname.split("."):
        matches = [n for n in body if isinstance(n, _DEFINITIONS) and n.name == part]
        if not matches:
            return None
        found = matches[-1]
        body = found.body
    return found


def definition_digest(source: str, qualname: str) -> str | None:
    """sha256 of the definition's syntax tree without docstrings; None when absent or unparsable."""
    try:
        node = find_definition(source, qualname)
    except (SyntaxError, ValueError):
        return None
    if node is None:
        return None
    bare = _without_docstrings(copy.deepcopy(node))
    return hashlib.sha256(ast.dump(bare, include_attributes=False).encode()).hexdigest()


def _without_docstrings(node: ast.AST) -> ast.AST:
    for child in ast.walk(node):
        if isinstance(child, (*_DEFINITIONS, ast.Module)) and child.body:
            first = child.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                first.value.value, str
            ):
                child.body = child.body[1:] or [ast.Pass()]
    return node


def file_digest(path: Path, qualname: str) -> str | None:
    """definition_digest of a file on disk; None when the file is missing or unreadable."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return definition_digest(source, qualname)


def expected_digests(repo: CampaignRepo, commit: str, entries: Iterable[str]) -> dict[str, str | None]:
    """Digest of each definition entry in a commit of the campaign repository (None: not there)."""
    digests: dict[str, str | None] = {}
    for entry in entries:
        path, qualname = split_entry(entry)
        proc = run_git(["cat-file", "blob", f"{commit}:{path}"], cwd=repo.path, check=False)
        try:
            source = proc.stdout.decode("utf-8") if proc.returncode == 0 else None
        except UnicodeDecodeError:
            source = None
        digests[entry] = None if source is None else definition_digest(source, qualname)
    return digests


def change_problems(repo: CampaignRepo, commit: str, diff: str, protected: Iterable[str]) -> list[str]:
    """Why a diff that applies on `commit` alters a protected definition (empty: it does not)."""
    touched = set(touched_paths(diff))
    definitions = [split_entry(e) for e in protected if is_definition(e) and split_entry(e)[0] in touched]
    if not definitions:
        return []
    files = repo.changed_files(commit, diff)
    if files is None:
        # changed_files gives up on binary or unreadable files; a change to the definition's
        # file that cannot be verified is not admitted.
        return [f"cannot read {', '.join(p for p, _ in definitions)} as text after the change, so its protected "
                "definitions cannot be checked; edit it as a text diff"]
    problems = []
    for path, qualname in definitions:
        before, after = files.get(path, ("", ""))
        was, now = definition_digest(before, qualname), definition_digest(after, qualname)
        if now is None:
            problems.append(
                f"removes, renames or breaks the syntax of protected definition {path}::{qualname}; "
                "it computes the metric and must stay as it is, change other code instead"
            )
        elif now != was:
            problems.append(
                f"changes protected definition {path}::{qualname}; it computes the metric and is frozen, "
                "change other code of the file instead"
            )
    return problems
