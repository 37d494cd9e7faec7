"""The exact key of a code change, through the Python AST.

Two diffs are the same change when they turn the same code into the same code once comments,
docstrings, formatting, the names of local variables and the order of independent adjacent
statements are set aside. Each touched Python file is parsed before and after, normalized and
unparsed; the key is a hash of the lines that differ (difflib), each with the function or class
it is in. A file that is not Python, or does not parse, falls back to its changed lines with
whitespace and comments dropped; so does a diff whose sources are unknown, and a file whose
change is too large for the AST pass to stay fast (see MAX_AST_CHANGED_LINES).
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping

_COMMENT = re.compile(r"^\s*(#|//)")
_SIMPLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Import, ast.ImportFrom, ast.Pass)
_DEF = re.compile(r"^(\s*)(?:async\s+def|def|class)\s+(\w+)")
_HEADER = re.compile(r"^\+\+\+ (?:b/)?(\S+)")
_NAME_IN_DUMP = re.compile(r"Name\('([^']*)',")
# The AST pass costs about a millisecond per source line on a busy machine, and a change this
# large is a rewrite, not an idea that reappears in other words: above either bound a file is
# keyed by its changed lines (linear), so the memory never stalls on a generated change.
MAX_AST_CHANGED_LINES = 400  # lines in one version of the file and not the other
MAX_AST_SOURCE_CHARS = 400_000  # the two versions together
# difflib's work grows with each old line's occurrences among the new ones (and as their cube
# for lines that repeat): 10,000 such pairs take 0.1 s at worst, a 1,000-line file with a few
# repeated lines stays well within it.
MAX_DIFFLIB_PAIRS = 10_000


def code_key(diff: str, sources: Mapping[str, tuple[str, str]] | None, hypothesis: str = "") -> str:
    """The change's key: per touched file, its AST delta when it is Python that parses, else its
    textual delta. An empty diff (no edit to compare) is keyed by its hypothesis."""
    # What a diff says in its headers alone (a mode flip, a rename) is part of the change: two
    # header-only diffs must not share the key of "no edit".
    facts = "".join(f"\n{line}" for line in _header_facts(diff))
    if sources:
        parts = [f"{path}\n{_file_delta(path, *sources[path])}" for path in sorted(sources)]
        return "code:" + _hash("\n".join(parts) + facts)
    if not diff.strip():
        return "code:nodiff:" + _hash(" ".join(hypothesis.lower().split()))
    return "code:" + _hash(textual_delta(diff) + facts)


_FACT_PREFIXES = ("old mode ", "new mode ", "new file mode ", "deleted file mode ", "rename from ", "rename to ",
                  "copy from ", "copy to ")


def _header_facts(diff: str) -> list[str]:
    return sorted({" ".join(line.split()) for line in diff.splitlines() if line.startswith(_FACT_PREFIXES)})


def touched_code(sources: Mapping[str, tuple[str, str]]) -> frozenset[str]:
    """Where the change edits: "path:function" (or "path" at module level, or for a file that is
    not Python or does not parse)."""
    places: set[str] = set()
    for path, (before, after) in sources.items():
        changed = _ast_changes(before, after) if _keyed_by_ast(path, before, after) else None
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


def _keyed_by_ast(path: str, before: str, after: str) -> bool:
    if not path.endswith(".py") or len(before) + len(after) > MAX_AST_SOURCE_CHARS:
        return False
    old, new = Counter(before.splitlines()), Counter(after.splitlines())
    # Lines one version has and the other lacks: a lower bound of the change, in linear time.
    return (old - new).total() + (new - old).total() <= MAX_AST_CHANGED_LINES


def _file_delta(path: str, before: str, after: str) -> str:
    changed = _ast_changes(before, after) if _keyed_by_ast(path, before, after) else None
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
    """The lines that differ, in order. The common head and tail are set aside first (linear);
    what is left is matched by difflib when few of its lines repeat, since difflib is cubic in
    lines that repeat (600 lines of "x = 1" against a variant: 9 s). Otherwise the middle is
    compared as two multisets: the lines one side has more often than the other, removed first."""
    head = 0
    while head < min(len(old), len(new)) and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < min(len(old), len(new)) - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    old_end, new_end = len(old) - tail, len(new) - tail
    in_new = Counter(new[head:new_end])
    if sum(in_new[line] for line in old[head:old_end]) > MAX_DIFFLIB_PAIRS:
        yield from _multiset_differences(old, new, range(head, old_end), range(head, new_end))
        return
    matcher = difflib.SequenceMatcher(a=old[head:old_end], b=new[head:new_end], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        for i in range(head + i1, head + i2):
            yield "-", i, old[i].strip()
        for j in range(head + j1, head + j2):
            yield "+", j, new[j].strip()


def _multiset_differences(
    old: list[str], new: list[str], old_span: range, new_span: range
) -> Iterator[tuple[str, int, str]]:
    in_old = Counter(old[i] for i in old_span)
    in_new = Counter(new[j] for j in new_span)
    if in_old == in_new:
        # The same lines in another order: the reordered region is the change.
        yield from (("-", i, old[i].strip()) for i in old_span)
        yield from (("+", j, new[j].strip()) for j in new_span)
        return
    for side, lines, span, extra in (("-", old, old_span, in_old - in_new), ("+", new, new_span, in_new - in_old)):
        for index in span:  # a line's first occurrences are the ones counted as changed
            if extra[lines[index]] > 0:
                extra[lines[index]] -= 1
                yield side, index, lines[index].strip()


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
    """The run in its canonical order: repeatedly, of the statements whose predecessors are all
    placed, the one with the least masked text. A statement's predecessors are the earlier ones it
    touches a common name with where one of the two writes it; the edges kept are the last writer
    of each name and the readers since it, whose transitive closure is the same relation, so the
    sort is O(n log n + names touched) rather than quadratic in the run (a generated change of
    thousands of assignments is keyed in milliseconds)."""
    if len(run) < 2:
        return run
    # Sorted by their text with local names masked: renaming a local must not change the order.
    keys = [_masked_dump(stmt, local) for stmt in run]
    successors: list[set[int]] = [set() for _ in run]
    waiting = [0] * len(run)  # predecessors not placed yet
    last_writer: dict[str, int] = {}
    readers: dict[str, list[int]] = defaultdict(list)  # of each name since its last write
    for j, stmt in enumerate(run):
        reads, writes = _reads_writes(stmt)
        before = {last_writer[name] for name in reads | writes if name in last_writer}
        for name in writes:
            before.update(readers.pop(name, ()))
        before.discard(j)
        for i in before:
            successors[i].add(j)
        waiting[j] = len(before)
        for name in reads - writes:
            readers[name].append(j)
        for name in writes:
            last_writer[name] = j
    ready = [(keys[j], j) for j in range(len(run)) if not waiting[j]]
    heapq.heapify(ready)
    placed: list[ast.stmt] = []
    while ready:
        _, i = heapq.heappop(ready)
        placed.append(run[i])
        for j in successors[i]:
            waiting[j] -= 1
            if not waiting[j]:
                heapq.heappush(ready, (keys[j], j))
    return placed


def _masked_dump(stmt: ast.stmt, local: set[str]) -> str:
    dump = ast.dump(stmt, annotate_fields=False)
    return _NAME_IN_DUMP.sub(lambda m: "Name('_'," if m.group(1) in local else m.group(0), dump)


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
