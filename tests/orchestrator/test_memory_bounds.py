"""The memory's code key stays fast on changes a hostile proposer would send."""

from __future__ import annotations

import ast
import random
import time

from orchestrator.memory.code import _reads_writes, _sort_run, code_key, normalize_source, touched_code


def timed_key(before: str, after: str) -> tuple[str, float]:
    started = time.perf_counter()
    key = code_key("", {"train.py": (before, after)})
    touched_code({"train.py": (before, after)})
    return key, time.perf_counter() - started


def test_a_two_thousand_line_change_is_keyed_well_under_a_second() -> None:
    def body(k: int) -> str:
        lines = [f"    v{i} = v{max(i - 3, 0)} * {i * k} + p" for i in range(1000)]
        return "def train(p):\n" + "\n".join(lines) + "\n    return v0\n"

    key, elapsed = timed_key(body(1), body(2))  # 1,000 lines removed, 1,000 added
    assert elapsed < 5.0, f"{elapsed:.2f} s"  # linear: ~0.05 s; the cubic pass it replaced: minutes
    assert key == timed_key(body(1), body(2))[0] and key != timed_key(body(1), body(3))[0]


def test_lines_that_repeat_do_not_make_the_key_cubic() -> None:
    # difflib alone takes about 9 s on 600 such lines and grows as their cube.
    _, elapsed = timed_key("x = 1\n" * 3000, "x = 1\ny = 2\n" * 1500)
    assert elapsed < 5.0, f"{elapsed:.2f} s"  # linear: ~0.05 s; the cubic pass it replaced: minutes
    _, elapsed = timed_key("x = f()\n" * 390, "x = f()\n" * 200 + "y = f()\n" * 190)
    assert elapsed < 5.0, f"{elapsed:.2f} s"  # linear: ~0.05 s; the cubic pass it replaced: minutes


def test_a_long_run_of_assignments_is_sorted_in_n_log_n() -> None:
    run = ast.parse("\n".join(f"a{i} = a{i // 2} + {i}" for i in range(3000))).body
    started = time.perf_counter()
    _sort_run(run, set())
    assert time.perf_counter() - started < 5.0


def _reference_order(run: list[ast.stmt]) -> list[str]:
    """The canonical order by its definition: repeatedly, the least statement all of whose
    earlier conflicting statements are placed (quadratic per step; small runs only)."""
    effects = [_reads_writes(s) for s in run]
    keys = [ast.dump(s, annotate_fields=False) for s in run]

    def conflict(i: int, j: int) -> bool:
        (ri, wi), (rj, wj) = effects[i], effects[j]
        return bool(wi & (rj | wj) or ri & wj)

    placed: list[int] = []
    while len(placed) < len(run):
        ready = [j for j in range(len(run)) if j not in placed
                 and all(i in placed for i in range(j) if conflict(i, j))]
        placed.append(min(ready, key=lambda j: (keys[j], j)))
    return [keys[j] for j in placed]


def test_the_fast_sort_gives_the_order_the_definition_gives() -> None:
    rng = random.Random(7)
    names = "abcdef"
    shapes = ["{a} = {b} + {c}", "{a} += {b}", "{a}.x = f({b})", "import {a}", "{a} = g()", "{a}[{b}] = {c}"]
    for _ in range(500):
        source = "\n".join(
            rng.choice(shapes).format(a=rng.choice(names), b=rng.choice(names), c=rng.choice(names))
            for _ in range(rng.randint(2, 12))
        )
        run = ast.parse(source).body
        fast = [ast.dump(s, annotate_fields=False) for s in _sort_run(run, set())]
        assert fast == _reference_order(run), source
    assert normalize_source("b = 1\na = 2\n") == ["a = 2", "b = 1"]
