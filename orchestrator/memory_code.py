"""The exact key of a code change, through the Python AST.

Two diffs are the same change when they turn the same code into the same code once comments,
docstrings, formatting, the names of local variables and the order of independent adjacent
statements are set aside. The key is a hash of the normalized lines removed and added.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import re
from collections.abc import Mapping

_COMMENT = re.compile(r"^\s*(#|//)")
_SIMPLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Import, ast.ImportFrom)


def code_key(diff: str, sources: Mapping[str, tuple[str, str]] | None) -> str:
    """The change's key: from the AST when every touched file is Python that parses, else text."""
    if sources:
        parts = []
        for path in sorted(sources):
            before, after = sources[path]
            lines = _ast_delta(before, after) if path.endswith(".py") else None
            if lines is None:
                return "code:" + _hash(textual_delta(diff))
            parts.append(f"{path}\n{lines}")
        return "code:" + _hash("\n".join(parts))
    return "code:" + _hash(textual_delta(diff))


def textual_delta(diff: str) -> str:
    """The diff's changed lines without whitespace, comment-only or blank lines."""
    kept = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")) or not line.startswith(("+", "-")):
            continue
        body = line[1:]
        if not body.strip() or _COMMENT.match(body):
            continue
        kept.append(line[0] + "".join(body.split("#", 1)[0].split()))
    return "\n".join(kept)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _ast_delta(before: str, after: str) -> str | None:
    old, new = normalize_source(before), normalize_source(after)
    if old is None or new is None:
        return None
    delta = [
        line for line in difflib.unified_diff(old, new, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    return "\n".join(delta)


def normalize_source(text: str) -> list[str] | None:
    """Canonical lines of a module, or None when it does not parse."""
    if not text.strip():
        return []
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    tree = _Normalizer().visit(tree)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree).splitlines()


class _Normalizer(ast.NodeTransformer):
    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                setattr(node, field, _canonical_order(_drop_docstring(body)))
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        return self._function(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        self.generic_visit(node)
        _rename_locals(node)
        return node


def _drop_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return body[1:] or [ast.Pass()]
    return body


def _rename_locals(func: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
    """Locals (bound in the function, not parameters, globals or nonlocals) get canonical names
    in order of first appearance, so renaming a local does not make a new change."""
    params = {a.arg for a in [*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs]}
    params |= {a.arg for a in (func.args.vararg, func.args.kwarg) if a is not None}
    declared: set[str] = set()
    bound: list[str] = []
    for node in ast.walk(func):
        if isinstance(node, ast.Global | ast.Nonlocal):
            declared.update(node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id not in bound:
            bound.append(node.id)
    names = {name: f"_v{i}" for i, name in enumerate(n for n in bound if n not in params and n not in declared)}
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and node.id in names:
            node.id = names[node.id]


def _canonical_order(body: list[ast.stmt]) -> list[ast.stmt]:
    """Sort each run of adjacent simple statements that do not depend on one another."""
    out: list[ast.stmt] = []
    run: list[ast.stmt] = []
    for stmt in [*body, None]:
        if stmt is not None and isinstance(stmt, _SIMPLE):
            run.append(stmt)
            continue
        out.extend(_sort_run(run))
        run = []
        if stmt is not None:
            out.append(stmt)
    return out


def _sort_run(run: list[ast.stmt]) -> list[ast.stmt]:
    if len(run) < 2:
        return run
    effects = [_reads_writes(stmt) for stmt in run]
    dumps = [ast.dump(stmt) for stmt in run]
    # i must stay before j when they touch a common name and one of them writes it.
    after = {j: {i for i in range(j) if _depends(effects[i], effects[j])} for j in range(len(run))}
    placed: list[int] = []
    while len(placed) < len(run):
        ready = [j for j in range(len(run)) if j not in placed and after[j] <= set(placed)]
        placed.append(min(ready, key=lambda j: dumps[j]))
    return [run[j] for j in placed]


def _depends(a: tuple[set[str], set[str]], b: tuple[set[str], set[str]]) -> bool:
    reads_a, writes_a = a
    reads_b, writes_b = b
    return bool(writes_a & (reads_b | writes_b) or reads_a & writes_b)


def _reads_writes(stmt: ast.stmt) -> tuple[set[str], set[str]]:
    reads: set[str] = set()
    writes: set[str] = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name):
            (writes if isinstance(node.ctx, ast.Store | ast.Del) else reads).add(node.id)
        elif isinstance(node, ast.alias):
            writes.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            writes.add(_root_name(node))  # obj.x = ... changes obj
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            writes.add(_root_name(node))
        elif isinstance(node, ast.Call):
            writes.add("<call>")  # calls may have effects: two of them keep their order
            reads.add("<call>")
    if isinstance(stmt, ast.AugAssign):
        reads |= writes
    return reads, writes


def _root_name(node: ast.expr) -> str:
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else "<expr>"
