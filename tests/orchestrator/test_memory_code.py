"""Exact keys of code changes through the AST: the same edit written differently is one key."""

from __future__ import annotations

import difflib
import textwrap

from orchestrator.memory.code import code_key, normalize_source, textual_delta, touched_code

BASE = textwrap.dedent('''
    import numpy as np


    def fit(data, lr):
        """Fit the model."""
        total = 0.0
        for row in data:
            total += row * lr
        return total


    def evaluate(data):
        return sum(data)
''')


def _diff(before: str, after: str, path: str = "m.py") -> str:
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), f"a/{path}", f"b/{path}"))


def _key(after: str, before: str = BASE) -> str:
    return code_key(_diff(before, after), {"m.py": (before, after)})


SCALED = BASE.replace("total += row * lr", "total += row * lr * 2")


def test_whitespace_comments_and_docstrings_do_not_matter() -> None:
    reference = _key(SCALED)
    assert _key(SCALED.replace("total += row * lr * 2", "total += row*lr*2  # twice as strong")) == reference
    assert _key(SCALED.replace('"""Fit the model."""', '"""Fit the model, twice as fast."""')) == reference
    assert _key(SCALED.replace("total += row * lr * 2", "total += (row * lr\n                  * 2)")) == reference


def test_renamed_locals_do_not_matter_but_parameters_and_globals_do() -> None:
    reference = _key(SCALED)
    assert _key(SCALED.replace("total", "acc").replace("row", "sample")) == reference
    assert _key(SCALED.replace("lr", "rate")) != reference  # a parameter is part of the interface


def test_one_edit_written_two_ways_is_one_key() -> None:
    """The brief's case: one diff adds a comment and uses other local names."""
    plain = BASE.replace("    total = 0.0\n", "    total = 0.0\n    scale = 2.0\n").replace(
        "total += row * lr", "total += row * lr * scale")
    comment = "    # stronger steps help early on\n"
    dressed = BASE.replace("    total = 0.0\n", f"    total = 0.0\n{comment}    factor = 2.0\n")
    dressed = dressed.replace("total += row * lr", "total += row * lr * factor").replace("total", "running")
    assert _key(plain) == _key(dressed)


def test_reordered_independent_statements_do_not_matter() -> None:
    a = BASE.replace("    total = 0.0\n", "    total = 0.0\n    scale = 2\n    offset = 1\n")
    b = BASE.replace("    total = 0.0\n", "    total = 0.0\n    offset = 1\n    scale = 2\n")
    assert _key(a) == _key(b)
    # Renaming a local and reordering at once: still the same change.
    c = BASE.replace("    total = 0.0\n", "    total = 0.0\n    shift = 1\n    scale = 2\n")
    assert _key(c) == _key(a)


def test_different_edits_have_different_keys() -> None:
    reference = _key(SCALED)
    assert _key(BASE.replace("total += row * lr", "total += row * lr * 3")) != reference  # another constant
    assert _key(BASE.replace("total += row * lr", "total -= row * lr")) != reference  # another operation
    # The same line in another function is another change.
    elsewhere = BASE.replace("return sum(data)", "return sum(data) * 2")
    inside = BASE.replace("return total", "return total * 2")
    assert _key(elsewhere) != _key(inside)


def test_dependent_statements_keep_their_order() -> None:
    a = BASE.replace("    total = 0.0\n", "    total = 0.0\n    scale = 2\n    scale = scale + 1\n")
    b = BASE.replace("    total = 0.0\n", "    total = 0.0\n    scale = scale + 1\n    scale = 2\n")
    assert _key(a) != _key(b)
    # Calls may have effects: two calls are never reordered.
    c = BASE.replace("    total = 0.0\n", "    total = 0.0\n    np.random.seed(0)\n    x = np.random.rand()\n")
    d = BASE.replace("    total = 0.0\n", "    total = 0.0\n    x = np.random.rand()\n    np.random.seed(0)\n")
    assert _key(c) != _key(d)


def test_nested_functions_keep_their_own_names() -> None:
    source = "def f(a):\n    b = a\n    def g(c):\n        d = c + b\n        return d\n    return g(b)\n"
    renamed = source.replace("d = c + b", "e = c + b").replace("return d", "return e")
    assert normalize_source(source) == normalize_source(renamed)


def test_without_sources_the_diff_text_is_normalized() -> None:
    diff = "--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
    spaced = "--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,2 @@\n-x  =  1\n+x = 2   # faster\n+# why: faster\n"
    assert code_key(diff, None) == code_key(spaced, None)
    assert code_key(diff, None) != code_key(diff.replace("x = 2", "x = 3"), None)
    assert code_key(diff, None) != code_key(diff.replace("m.py", "n.py"), None)  # another file
    assert textual_delta(diff) == "@m.py\n-x=1\n+x=2"


def test_files_that_are_not_python_or_do_not_parse_fall_back_per_file() -> None:
    config_before, config_after = "lr: 0.1\nepochs: 10\n", "lr: 0.2\nepochs: 10\n"
    spaced_after = "lr:   0.2   # faster\nepochs: 10\n"
    py = {"m.py": (BASE, SCALED)}
    key = code_key("", {**py, "c.yaml": (config_before, config_after)})
    assert key == code_key("", {**py, "c.yaml": (config_before, spaced_after)})
    assert key != code_key("", {**py, "c.yaml": (config_before, "lr: 0.3\nepochs: 10\n")})
    # A Python file that does not parse after the edit is compared as text, not as a failure.
    broken = {"m.py": (BASE, BASE.replace("return total", "return total +"))}
    assert code_key("", broken) == code_key("", {"m.py": (BASE, BASE.replace("return total", "return  total +"))})


def test_created_and_deleted_files() -> None:
    created = code_key("", {"new.py": ("", "def f(x):\n    y = x\n    return y\n")})
    assert created == code_key("", {"new.py": ("", "def f(x):\n    z = x  # copy\n    return z\n")})
    assert code_key("", {"old.py": ("x = 1\n", "")}) != created


def test_an_empty_diff_is_keyed_by_its_hypothesis() -> None:
    assert code_key("", None, "Use AdamW") == code_key("  ", None, "use   adamw")
    assert code_key("", None, "Use AdamW") != code_key("", None, "Use Adam")


def test_touched_code_names_functions() -> None:
    assert touched_code({"m.py": (BASE, SCALED)}) == {"m.py:fit"}
    assert touched_code({"m.py": (BASE, BASE.replace("import numpy as np", "import numpy"))}) == {"m.py"}
    assert touched_code({"c.yaml": ("a: 1\n", "a: 2\n")}) == {"c.yaml"}


def test_header_only_changes_keep_keys_of_their_own() -> None:
    """A mode flip and a rename carry no edited line; each is still its own change."""
    from orchestrator.memory.code import code_key

    def header_only(*lines: str) -> str:
        return "diff --git a/model.py b/model.py\n" + "".join(f"{line}\n" for line in lines)

    executable = header_only("old mode 100644", "new mode 100755")
    plain_again = header_only("old mode 100755", "new mode 100644")
    renamed = "diff --git a/model.py b/net.py\nsimilarity index 100%\nrename from model.py\nrename to net.py\n"
    keys = {code_key(d, None) for d in (executable, plain_again, renamed)}
    assert len(keys) == 3
    assert code_key(executable, None) == code_key(executable.replace("100755", "100755 "), None)  # spacing aside
