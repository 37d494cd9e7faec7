from __future__ import annotations

from orchestrator.change import Change
from orchestrator.memory import Memory


def _params(**kw: object) -> Change:
    return Change(kind="params", aspect=next(iter(kw)), hypothesis="h", proposer="t", params=dict(kw))


def _code(diff: str, hypothesis: str = "h") -> Change:
    return Change(kind="code", aspect="data", hypothesis=hypothesis, proposer="t", diff=diff)


DIFF = "--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"


def test_params_equivalence_is_canonical() -> None:
    memory = Memory()
    memory.remember(_params(lr=0.1), "p1")
    assert memory.duplicate_of(_params(lr=0.1000000001)) == "p1"
    assert memory.duplicate_of(_params(lr=0.2)) is None
    assert memory.duplicate_of(_params(alpha=0.1)) is None


def test_code_equivalence_ignores_whitespace_comments_and_hypothesis() -> None:
    memory = Memory()
    memory.remember(_code(DIFF), "p1")
    spaced = "--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,2 @@\n-x  =  1\n+x = 2   \n+# why: faster\n"
    assert memory.duplicate_of(_code(spaced, "other words")) == "p1"
    assert memory.duplicate_of(_code(DIFF.replace("x = 2", "x = 3"))) is None


def test_first_proposal_stays_the_reference() -> None:
    memory = Memory()
    memory.remember(_params(lr=0.1), "p1")
    memory.remember(_params(lr=0.1), "p2")
    assert memory.duplicate_of(_params(lr=0.1)) == "p1" and len(memory) == 1
