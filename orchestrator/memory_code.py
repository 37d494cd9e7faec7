"""The exact key of a code change, through the Python AST.

Two diffs are the same change when they turn the same code into the same code once comments,
docstrings, formatting, the names of local variables and the order of independent adjacent
statements are set aside. Each touched Python file is parsed before and after, normalized and
unparsed; the key is a hash of the lines that differ (difflib), each with the function or class
it is in. A file that is not Python, or does not parse, falls back to its changed lines with
whitespace and comments dropped; so does a diff whose sources are unknown.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import re
from collections.abc import Iterator, Mapping

_COMMENT = re.compile(r"^\s*(#|//)")
_SIMPLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Import, ast.ImportFrom, ast.Pass)
_DEF = re.compile(r"^(\s*)(?:async\s+def|def|class)\s+(\w+)")
_HEADER = re.compile(r"^\+\+\+ (?:b/)?(\S+)")


def code_key(diff: str, sources: Mapping[str, tuple[str, str]] | None, hypothesis: str = "") -> str:
    """The change's key: per touched file, its AST delta when it is Python that parses, else its
    textual delta. An empty diff (no edit to compare) is keyed by its hypothesis."""
    if sources:
        parts = [f"{path}\n{_file_delta(path, *sources[path])}" for path in sorted(sources)]
        return "code:" + _hash("\n".join(parts))
    if not diff.strip():
        return "code:nodiff:" + _hash(" ".join(hypothesis.lower().split()))
    return "code:" + _hash(textual_delta(diff))


def touched_code(sources: Mapping[str, tuple[str, str]]) -> frozenset[str]:
    """Where the change edits: "path:function" (or "path" at module level, or for a file that is
    not Python or does not parse)."""
    places: set[str] = set()
    for path, (before, after) in sources.items():
        changed = _ast_changes(before, after) if path.endswith(".py") else None
        if changed is None:
            places.add(path)
            continue
        places.update(f"{path}:{scope}" if scope else path for scope, _ in changed)
    return frozenset(places)


def textual_delta(diff: str) -> str:
    """The diff's changed lines, per file, without whitespace, comment-only or blank lines."""
    kept = []
    for line in diff.splitlines():
        header = _HEADER.match(line)
        if header:
            kept.append("@" + header.group(1))
            continue
        if line.startswith(("+++", "---")) or not line.startswith(("+", "-")):
            continue
        body = _clean(line[1:])
        if body:
            kept.append(line[0] + body)
    return "\n".join(kept)


def _clean(line: str) -> str:
    if not line.strip() or _COMMENT.match(line):
        return ""
    return "".join(line.split("#", 1)[0].split())


def _file_delta(path: str, before: str, after: str) -> str:
    changed = _ast_changes(before, after) if path.endswith(".py") else None
    if changed is not None:
        return "\n".join(f"{scope}|{line}" for scope, line in changed)
    old = [c for c in map(_clean, before.splitlines()) if c]
    new = [c for c in map(_clean, after.splitlines()) if c]
    return "\n".join(line for _, line in _differences(old, new))


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _ast_changes(before: str, after: str) -> list[tuple[str, str]] | None:
    """(scope, "+line" / "-line") for each normalized line that differs, or None if either side
    does not parse."""
    old, new = normalize_source(before), normalize_source(after)
    if old is None or new is None:
        return None
    old_scopes, new_scopes = _scopes(old), _scopes(new)
    changes = []
    for side, index, line in _indexed_differences(old, new):
        scopes = old_scopes if side == "-" else new_scopes
        changes.append((scopes[index], side + line))
    return changes


def _differences(old: list[str], new: list[str]) -> Iterator[tuple[int, str]]:
    for side, index, line in _indexed_differences(old, new):
        yield index, side + line


def _indexed_differences(old: list[str], new: list[str]) -> Iterator[tuple[str, int, str]]:
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        for i in range(i1, i2):
            yield "-", i, old[i].strip()
        for j in range(j1, j2):
            yield "+", j, new[j].strip()


def _scopes(lines: list[str]) -> list[str]:
    """For each unparsed line, the dotted name of the function or class it is in ("" at module
    level). ast.unparse indents by four spaces per level, so indentation tells nesting."""
    stack: list[tuple[int, str]] = []
    scopes = []
    for line in lines:
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent and line.strip():
            stack.pop()
        scopes.append(".".join(name for _, name in stack))
        match = _DEF.match(line)
        if match:
            stack.append((len(match.group(1)), match.group(2)))
    return scopes


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
    """Drops docstrings, sorts runs of independent statements, renames locals canonically."""

    def __init__(self) -> None:
        self._locals: list[set[str]] = [set()]  # the enclosing functions' locals, innermost last

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                setattr(node, name, _canonical_order(_drop_docstring(body), self._locals[-1]))
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        return self._function(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        names = _local_names(node)
        self._locals.append(names | self._locals[-1])
        self.generic_visit(node)
        self._locals.pop()
        _rename(node, names, depth=len(self._locals))
        return node


def _drop_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return body[1:] or [ast.Pass()]
    return body


def _local_names(func: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Names bound in the function that are not parameters, globals or nonlocals."""
    params = {a.arg for a in [*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs]}
    params |= {a.arg for a in (func.args.vararg, func.args.kwarg) if a is not None}
    declared: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(func):
        if isinstance(node, ast.Global | ast.Nonlocal):
            declared.update(node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            bound.add(node.id)
    return bound - params - declared


def _rename(func: ast.FunctionDef | ast.AsyncFunctionDef, names: set[str], depth: int) -> None:
    """Locals get canonical names in order of first appearance in the (already sorted) body, so
    renaming a local does not make a new change."""
    order: dict[str, str] = {}
    for node in _in_source_order(func):
        if isinstance(node, ast.Name) and node.id in names and node.id not in order:
            order[node.id] = f"_v{depth}_{len(order)}"  # per depth: a nested function's are its own
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and node.id in order:
            node.id = order[node.id]


def _in_source_order(node: ast.AST) -> Iterator[ast.AST]:
    """Depth first, fields in their order: the order a reader meets names (unlike ast.walk)."""
    yield node
    for child in ast.iter_child_nodes(node):
        yield from _in_source_order(child)


def _canonical_order(body: list[ast.stmt], local: set[str]) -> list[ast.stmt]:
    """Sort each run of adjacent simple statements that do not depend on one another."""
    out: list[ast.stmt] = []
    run: list[ast.stmt] = []
    for stmt in [*body, None]:
        if stmt is not None and isinstance(stmt, _SIMPLE):
            run.append(stmt)
            continue
        out.extend(_sort_run(run, local))
        run = []
        if stmt is not None:
            out.append(stmt)
    return out


def _sort_run(run: list[ast.stmt], local: set[str]) -> list[ast.stmt]:
    if len(run) < 2:
        return run
    effects = [_reads_writes(stmt) for stmt in run]
    # Sorted by their text with local names masked: renaming a local must not change the order.
    keys = [_masked_dump(stmt, local) for stmt in run]
    # i must stay before j when they touch a common name and one of them writes it.
    after = {j: {i for i in range(j) if _depends(effects[i], effects[j])} for j in range(len(run))}
    placed: list[int] = []
    while len(placed) < len(run):
        ready = [j for j in range(len(run)) if j not in placed and after[j] <= set(placed)]
        placed.append(min(ready, key=lambda j: (keys[j], j)))
    return [run[j] for j in placed]


def _masked_dump(stmt: ast.stmt, local: set[str]) -> str:
    dump = ast.dump(stmt, annotate_fields=False)
    for name in sorted(local, key=len, reverse=True):
        dump = dump.replace(f"Name('{name}',", "Name('_',")
    return dump


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
        elif isinstance(node, ast.Attribute | ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del):
            writes.add(_root_name(node))  # obj.x = ... changes obj
        elif isinstance(node, ast.Call | ast.Await | ast.Yield | ast.YieldFrom):
            writes.add("<effect>")  # calls may have effects: two of them keep their order
            reads.add("<effect>")
    if isinstance(stmt, ast.AugAssign):
        reads |= writes
    return reads, writes


def _root_name(node: ast.expr) -> str:
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else "<expr>"
