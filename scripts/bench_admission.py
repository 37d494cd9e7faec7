"""How long admission takes on diffs a hostile proposer sends: the size check that refuses a huge
diff before anything parses it, and the memory's key of a large code change.

    .venv/bin/python scripts/bench_admission.py

Prints the median of 5 runs of each; docs/benchmarks.md keeps the figures.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from orchestrator.config import LimitsConfig
from orchestrator.memory.code import code_key
from trials.patch import size_problem

RUNS = 5


def median_s(work: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _function(factor: int) -> str:
    lines = [f"    v{i} = v{max(i - 3, 0)} * {i * factor} + p" for i in range(1000)]
    return "def train(p):\n" + "\n".join(lines) + "\n    return v0\n"


def main() -> None:
    limits = LimitsConfig()
    one_line = "diff --git a/t.py b/t.py\n--- a/t.py\n+++ b/t.py\n@@ -1 +1 @@\n-a\n+b = '" + "x" * 5_000_000 + "'\n"
    many = ("diff --git a/t.py b/t.py\nnew file mode 100644\n--- /dev/null\n+++ b/t.py\n@@ -0,0 +1,100000 @@\n"
            + "".join(f"+x{i} = {i}\n" for i in range(100_000)))
    before, after = _function(1), _function(2)  # 1,000 lines removed, 1,000 added
    for problem in (size_problem(one_line, limits), size_problem(many, limits)):
        assert problem, "the size check let a huge diff through"
    print(f"5 MB one-line diff refused:        {median_s(lambda: size_problem(one_line, limits)) * 1e3:.2f} ms")
    print(f"100,000-line diff refused:         {median_s(lambda: size_problem(many, limits)) * 1e3:.2f} ms")
    print(f"memory key of a 2,000-line change: "
          f"{median_s(lambda: code_key('', {'train.py': (before, after)})) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
