from __future__ import annotations

import pytest

from orchestrator.config import LimitsConfig
from tests.trials.conftest import unified_diff
from trials.patch import matches_entry, touched_paths, validate_diff

PROTECTED = ["evaluate.py", "data/", "configs/*.yaml"]


def check(diff: str, *, editable: list[str] | None = None, max_lines: int = 50) -> list[str]:
    return validate_diff(diff, protected=PROTECTED, editable=editable, limits=LimitsConfig(max_diff_lines=max_lines))


def test_touched_paths_covers_edits_creations_deletions_and_renames() -> None:
    diff = (
        unified_diff("train.py", "a\n", "b\n")
        + unified_diff("new/mod.py", None, "x\n")
        + unified_diff("old.py", "x\n", None)
        + "diff --git a/src/a.py b/src/b.py\nsimilarity index 100%\nrename from src/a.py\nrename to src/b.py\n"
        + 'diff --git "a/with space.py" "b/with space.py"\n--- "a/with space.py"\n+++ "b/with space.py"\n'
        + "@@ -1 +1 @@\n-a\n+b\n"
    )
    assert touched_paths(diff) == ["new/mod.py", "old.py", "src/a.py", "src/b.py", "train.py", "with space.py"]


def test_a_clean_single_file_change_passes() -> None:
    assert check(unified_diff("train.py", "lr = 0.1\n", "lr = 0.2\n")) == []
    assert check(unified_diff("model.py", "x\n", "y\n"), editable=["model.py", "src/"]) == []


def test_a_removed_line_that_looks_like_a_header_is_content() -> None:
    # Inside a hunk, "--- data/x" is a removed line "-- data/x", not a file header.
    diff = unified_diff("notes.md", "-- data/x\nkeep\n", "keep\n")
    assert "--- data/x" in diff
    assert touched_paths(diff) == ["notes.md"]
    assert check(diff) == []


@pytest.mark.parametrize(
    ("diff", "expected"),
    [
        (
            unified_diff("evaluate.py", "a\n", "b\n"),
            "touches protected path evaluate.py (protected: evaluate.py, data/",
        ),
        (unified_diff("data/train.csv", "1\n", "2\n"), "touches protected path data/train.csv"),
        (unified_diff("configs/eval.yaml", "a\n", "b\n"), "touches protected path configs/eval.yaml"),
        (unified_diff("../escape.py", "a\n", "b\n"), "climbs out of the project"),
        ("--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "is absolute"),
        (unified_diff(".git/config", "a\n", "b\n"), "inside .git/"),
        (unified_diff(".arborist/params.json", "a\n", "b\n"), "inside .arborist/"),
        (
            "diff --git a/w.bin b/w.bin\nnew file mode 100644\nindex 0000000..e69de29\nGIT binary patch\nliteral 3\n",
            "binary patch",
        ),
        ("diff --git a/img.png b/img.png\nBinary files a/img.png and b/img.png differ\n", "binary patch"),
        (
            "diff --git a/link b/link\nnew file mode 120000\n"
            "--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+../evaluate.py\n",
            "symbolic link",
        ),
    ],
)
def test_unacceptable_diffs_are_explained(diff: str, expected: str) -> None:
    problems = check(diff)
    assert any(expected in p for p in problems), problems


def test_protection_wins_even_when_a_file_is_also_listed_as_editable() -> None:
    problems = check(unified_diff("data/x.csv", "1\n", "2\n"), editable=["*"])
    assert len(problems) == 1 and "protected" in problems[0]


def test_files_outside_the_editable_list_are_rejected() -> None:
    problems = check(unified_diff("utils.py", "a\n", "b\n"), editable=["model.py", "src/*.py"])
    assert problems == [
        "touches utils.py, which is not editable (editable: model.py, src/*.py); limit the change to those files"
    ]
    assert check(unified_diff("src/net.py", "a\n", "b\n"), editable=["model.py", "src/*.py"]) == []


def test_size_limit_counts_changed_lines() -> None:
    old = "".join(f"line {i}\n" for i in range(30))
    new = "".join(f"LINE {i}\n" for i in range(30))
    problems = check(unified_diff("train.py", old, new), max_lines=50)
    assert problems == [
        "the diff changes 60 lines, more than limits.max_diff_lines=50; propose a smaller change that alters one aspect"
    ]


@pytest.mark.parametrize("text", ["", "   \n", "please make the model bigger", "@@ -1 +1 @@\n-a\n+b\n"])
def test_text_that_is_not_a_diff_is_rejected(text: str) -> None:
    problems = check(text)
    assert len(problems) == 1
    assert any(word in problems[0] for word in ("empty", "not a unified diff", "no file headers"))


def test_several_problems_are_all_reported() -> None:
    diff = unified_diff("evaluate.py", "a\n", "b\n") + unified_diff("../x.py", "a\n", "b\n")
    assert len(check(diff)) == 2


def test_entry_matching() -> None:
    assert matches_entry("data/a/b.csv", "data")
    assert matches_entry("data/a/b.csv", "./data/")
    assert not matches_entry("database.py", "data")
    assert matches_entry("eval_set/x.json", "eval_*")
    assert not matches_entry("x.py", "/abs/heldout")
