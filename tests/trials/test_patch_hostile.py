"""A catalog of hostile diffs, each refused (or noted) with the reason a proposer is shown.

The file-mode cases are diffs that `git apply` itself accepts (checked against a real
repository), so what the text check refuses is exactly what would otherwise reach a worktree.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.config import LimitsConfig
from tests.trials.conftest import unified_diff
from trials.patch import diff_notes, inspect_diff, size_problem, validate_diff

PROTECTED = ["evaluate.py", "data/"]
LIMITS = LimitsConfig()


def check(diff: str, limits: LimitsConfig = LIMITS) -> list[str]:
    return validate_diff(diff, protected=PROTECTED, editable=None, limits=limits)


def link(mode_line: str, path: str = "link.py") -> str:
    return (
        f"diff --git a/{path} b/{path}\n{mode_line}\nindex 0000000..4d1ae35\n--- /dev/null\n+++ b/{path}\n"
        "@@ -0,0 +1 @@\n+evaluate.py\n\\ No newline at end of file\n"
    )


RETYPE = "diff --git a/train.py b/train.py\nold mode 100644\nnew mode {mode}\n"


def linked(header: str, path: str) -> str:
    return (
        f"`{header}` makes {path} a symbolic link; links could point outside the project or at "
        "protected files, so edit regular files only"
    )


MODE_CASES = {
    "new file 120000": (link("new file mode 120000"), linked("new file mode 120000", "link.py")),
    "new file 0120000": (link("new file mode 0120000"), linked("new file mode 0120000", "link.py")),
    "new file, padded": (link("new file mode   120000"), linked("new file mode   120000", "link.py")),
    "existing file retyped": (RETYPE.format(mode="120000"), linked("new mode 120000", "train.py")),
    "existing file retyped 0120000": (
        RETYPE.format(mode="0120000"), linked("new mode 0120000", "train.py"),
    ),
    "index line": (
        "diff --git a/train.py b/train.py\nindex 9daeafb..e2d2f7b 120000\n--- a/train.py\n+++ b/train.py\n"
        "@@ -1 +1 @@\n-x\n+evaluate.py\n",
        linked("index 120000", "train.py"),
    ),
    "deleted link": (
        "diff --git a/old.py b/old.py\ndeleted file mode 120000\nindex 4d1ae35..0000000\n--- a/old.py\n"
        "+++ /dev/null\n@@ -1 +0,0 @@\n-evaluate.py\n",
        linked("deleted file mode 120000", "old.py"),
    ),
    "renamed into a link": (
        "diff --git a/train.py b/run.py\nold mode 100644\nnew mode 120000\nsimilarity index 100%\n"
        "rename from train.py\nrename to run.py\n",
        linked("new mode 120000", "run.py"),
    ),
    "copied into a link": (
        "diff --git a/train.py b/run.py\nold mode 100644\nnew mode 0120000\nsimilarity index 100%\n"
        "copy from train.py\ncopy to run.py\n",
        linked("new mode 0120000", "run.py"),
    ),
    "gitlink": (
        "diff --git a/vendor b/vendor\nnew file mode 160000\nindex 0000000..4d1ae35\n--- /dev/null\n"
        "+++ b/vendor\n@@ -0,0 +1 @@\n+Subproject commit 4d1ae35ba2c8ec712fa2a379db44ad639ca277bd\n",
        "`new file mode 160000` makes vendor a gitlink (a submodule); a change may not pull in another "
        "repository, edit the project's own files",
    ),
    "group-writable": (
        RETYPE.format(mode="100664"),
        "`new mode 100664` gives train.py mode 100664; only regular files are allowed (mode 100644, or "
        "100755 for executables)",
    ),
    "unreadable mode": (
        RETYPE.format(mode="12o000"),
        "`new mode 12o000` for train.py is not a file mode git can read; edit regular files only (mode "
        "100644, or 100755 for executables)",
    ),
}


@pytest.mark.parametrize("case", MODE_CASES)
def test_every_spelling_of_a_file_mode_is_read_as_git_reads_it(case: str) -> None:
    diff, reason = MODE_CASES[case]
    assert check(diff) == [reason]


@pytest.mark.parametrize("case", ["new file 0120000", "existing file retyped 0120000", "new file, padded"])
def test_git_itself_would_apply_the_links_refused(case: str, tmp_path: Path) -> None:
    # What makes these hostile: git accepts them, and `git apply` would create the link.
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text("x\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    diff = MODE_CASES[case][0]
    if "retyped" in case:  # a mode change alone does not retype a file: git needs the link target
        diff = (
            "diff --git a/train.py b/train.py\ndeleted file mode 100644\nindex 587be6b..0000000\n"
            "--- a/train.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n" + link("new file mode 0120000", "train.py")
        )
        assert any("symbolic link" in p for p in check(diff))
    applied = subprocess.run([*git, "apply", "-"], input=diff.encode(), capture_output=True)
    assert applied.returncode == 0, applied.stderr.decode()
    assert (repo / ("train.py" if "retyped" in case else "link.py")).is_symlink()


def test_an_executable_bit_is_allowed_and_noted() -> None:
    made_executable = "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n"
    assert check(made_executable) == []
    assert diff_notes(made_executable) == ["sets the executable bit of run.sh (mode 100644 -> 100755)"]
    cleared = "diff --git a/run.sh b/run.sh\nold mode 100755\nnew mode 100644\n"
    assert check(cleared) == []
    assert diff_notes(cleared) == ["clears the executable bit of run.sh (mode 100755 -> 100644)"]
    created = (
        "diff --git a/go.sh b/go.sh\nnew file mode 100755\nindex 0000000..e69de29\n--- /dev/null\n+++ b/go.sh\n"
        "@@ -0,0 +1 @@\n+echo hi\n"
    )
    report = inspect_diff(created, protected=PROTECTED, editable=None, limits=LIMITS)
    assert report.problems == [] and report.notes == ["creates go.sh as an executable (mode 100755)"]
    assert diff_notes(unified_diff("train.py", "a\n", "b\n")) == []


BINARY_REASON = (
    "the diff contains a binary patch; changes must be text diffs of source files, generate data at run "
    "time instead of committing it"
)
PROTECTED_REASON = (
    "touches protected path {path} (protected: evaluate.py, data/); the evaluation code and data are "
    "frozen, change the training code instead"
)
# A line git reads as content that str.splitlines would split at the form feed into a hunk
# header, which would swallow the evaluate.py headers after it as hunk lines.
FORM_FEED = (
    unified_diff("train.py", "a\n", "b\n").replace("+b\n", "+b\x0c@@ -0,0 +1,9 @@\n")
    + "--- a/evaluate.py\n+++ b/evaluate.py\n@@ -1 +1 @@\n-a\n+b\n"
)

PATH_CASES = {
    "binary": (
        "diff --git a/w.bin b/w.bin\nnew file mode 100644\nindex 0000000..e69de29\nGIT binary patch\nliteral 3\n",
        [BINARY_REASON],
    ),
    "parent folder": (
        unified_diff("../outside.py", "a\n", "b\n"),
        ["path ../outside.py climbs out of the project with '..'; edit files inside the project only"],
    ),
    "absolute": (
        "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
        ["path /etc/passwd is absolute; paths in a diff are relative to the project root (`a/<path>`, `b/<path>`)"],
    ),
    "git hook": (
        unified_diff(".git/hooks/post-checkout", None, "curl evil\n"),
        ["path .git/hooks/post-checkout is inside .git/; a change may edit project files, not git's metadata"],
    ),
    "nested .git": (
        unified_diff("sub/.git/config", "a\n", "b\n"),
        ["path sub/.git/config is inside .git/; a change may edit project files, not git's metadata"],
    ),
    "CRLF headers": (
        "diff --git a/evaluate.py b/evaluate.py\r\n--- a/evaluate.py\r\n+++ b/evaluate.py\r\n"
        "@@ -1 +1 @@\r\n-a\r\n+b\r\n",
        [PROTECTED_REASON.format(path="evaluate.py")],
    ),
    "quoted path with octal escapes": (
        'diff --git "a/ev\\141luate.py" "b/ev\\141luate.py"\n--- "a/ev\\141luate.py"\n+++ "b/ev\\141luate.py"\n'
        "@@ -1 +1 @@\n-a\n+b\n",
        [PROTECTED_REASON.format(path="evaluate.py")],
    ),
    "created from /dev/null": (
        "--- /dev/null\n+++ b/data/labels.csv\n@@ -0,0 +1 @@\n+1\n",
        [PROTECTED_REASON.format(path="data/labels.csv")],
    ),
    "deleted to /dev/null": (
        "--- a/evaluate.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n",
        [PROTECTED_REASON.format(path="evaluate.py")],
    ),
    "rename onto a protected path": (
        "diff --git a/train.py b/evaluate.py\nsimilarity index 100%\nrename from train.py\nrename to evaluate.py\n",
        [PROTECTED_REASON.format(path="evaluate.py")],
    ),
    "rename in git's old spelling": (
        "diff --git a/evaluate.py b/mine.py\nsimilarity index 100%\nrename old evaluate.py\nrename new mine.py\n",
        [PROTECTED_REASON.format(path="evaluate.py")],
    ),
    "copy from a protected path": (
        "diff --git a/evaluate.py b/mine.py\nsimilarity index 90%\ncopy from evaluate.py\ncopy to mine.py\n"
        "--- a/evaluate.py\n+++ b/mine.py\n@@ -1 +1 @@\n-a\n+b\n",
        [PROTECTED_REASON.format(path="evaluate.py")],
    ),
    "header hidden behind a form feed": (FORM_FEED, [PROTECTED_REASON.format(path="evaluate.py")]),
    "lone surrogate": (
        unified_diff("train.py", "a\n", "b\ud800\n"),
        ["character 81 of the diff (U+D800) cannot be written as UTF-8, so git could not read the patch; "
         "send the diff as plain UTF-8 text"],
    ),
}


@pytest.mark.parametrize("case", PATH_CASES)
def test_hostile_paths_and_contents_are_refused_with_their_reason(case: str) -> None:
    diff, reasons = PATH_CASES[case]
    assert check(diff) == reasons


def test_an_unbalanced_quote_in_a_header_is_read_not_crashed_on() -> None:
    diff = 'diff --git a/x"y.py b/x"y.py\n--- a/x"y.py\n+++ b/x"y.py\n@@ -1 +1 @@\n-a\n+b\n'
    assert check(diff) == []


def test_a_five_megabyte_line_is_refused_for_its_bytes() -> None:
    diff = unified_diff("train.py", "a\n", "b = '" + "x" * 5_000_000 + "'\n")
    started = time.perf_counter()
    problems = check(diff)
    assert time.perf_counter() - started < 0.5
    assert problems == [
        f"the diff is {len(diff)} bytes, more than limits.max_diff_bytes=200000; propose a smaller change "
        "that alters one aspect"
    ]


def test_one_long_line_is_refused_for_its_length() -> None:
    diff = unified_diff("train.py", "a\n", "b = '" + "x" * 20_000 + "'\n")
    assert check(diff) == [
        "line 6 of the diff is 20007 characters long, more than limits.max_diff_line_chars=5000; source "
        "lines that long are generated data, generate it at run time instead"
    ]


def test_a_hundred_thousand_line_diff_is_refused_at_once() -> None:
    diff = unified_diff("train.py", None, "".join(f"x{i} = {i}\n" for i in range(100_000)))
    started = time.perf_counter()
    problems = check(diff)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"took {elapsed:.2f} s"
    assert problems == [
        f"the diff is {len(diff)} bytes, more than limits.max_diff_bytes=200000; propose a smaller change "
        "that alters one aspect"
    ]
    # With the byte limit out of the way the changed lines are counted, still in one pass.
    roomy = LimitsConfig(max_diff_bytes=10_000_000)
    started = time.perf_counter()
    assert size_problem(diff, roomy) == (
        "the diff changes 100000 lines, more than limits.max_diff_lines=400; propose a smaller change "
        "that alters one aspect"
    )
    assert time.perf_counter() - started < 2.0


def test_a_diff_at_the_limits_passes() -> None:
    diff = unified_diff("train.py", None, "".join(f"x{i} = {i}\n" for i in range(400)))
    longest = max(len(line) for line in diff.split("\n"))
    limits = LimitsConfig(max_diff_bytes=len(diff), max_diff_lines=400, max_diff_line_chars=longest)
    assert size_problem(diff, limits) == ""
    assert check(diff, limits) == []
