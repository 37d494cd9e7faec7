"""Python bytecode of a trial's steps: one cache per machine for the installation, one per step for the rest.

Every step runs with `PYTHONPYCACHEPREFIX` pointing at a folder of its own, so Python never
reads the worktree's `__pycache__` and no step can hand compiled code to another. That prefix
hides the `__pycache__` folders of the installation too, so each step used to compile the
standard library and every site-package it imported again: about 1,400 files and 40 MB for a
scikit-learn trial.

Under the sandbox, the installation's bytecode now comes from a shared cache,
`<scratch>/pycache/`, in the prefix's own layout. Only the worker writes it, outside any
sandbox, by compiling the real source files of the interpreter's own folders (the standard
library and site-packages, read-only to every step); steps see it read-only. A step's own
prefix starts as a tree of symbolic links to the shared files, so Python reads those, and what
it compiles itself (the project's modules, installed modules the shared cache does not hold
yet) lands as real files in the step's folder. After the step, the worker looks at the names of
the installed modules the step had to compile and compiles those sources itself into the shared
cache; it never copies what a step wrote. The step's folder goes with the trial.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import py_compile
import re
import site
import sys
import sysconfig
import threading
import time
from collections.abc import Iterable, Iterator
from itertools import count
from pathlib import Path

from trials.fsutil import rmtree_force

SHARED_DIR = "pycache"  # under the scratch folder
_STAGING = ".staging"  # where the worker writes a compiled file before it renames it into place
_STALE_STAGING_S = 600.0  # a staged file older than this belongs to a worker that died
_MAX_ENTRIES = 200_000  # of a step's cache examined after it: a step must not stall the worker
_TAG = sys.implementation.cache_tag or ""
_PYC = re.compile(r"^(?P<stem>.+?)\." + re.escape(_TAG) + r"(?:\.opt-(?P<opt>[12]))?\.pyc$")
_staged = count()
_log = logging.getLogger(__name__)


def shared_cache(scratch_dir: Path) -> Path:
    return Path(scratch_dir) / SHARED_DIR


def interpreter_dirs() -> list[Path]:
    """Folders whose sources may go into the shared cache: the running interpreter's own.

    They are the standard library and the site-packages of the Python running arborist, which
    is the `python` of every step and which the sandbox binds read-only.
    """
    found: set[str] = set()
    paths = sysconfig.get_paths()
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(name):
            found.add(paths[name])
    found.update(site.getsitepackages())
    user_site = site.getusersitepackages()
    if os.path.isdir(user_site):
        found.add(user_site)
    return sorted(Path(os.path.realpath(p)) for p in found if os.path.isdir(p))


def furnish(step_cache: Path, shared: Path | None) -> int:
    """Make `step_cache` an empty prefix that reads the shared cache; return the links made.

    Each shared file gets a symbolic link at the same place in the step's prefix. Python
    follows it to read; when it writes a file there (a module the shared cache lacks, or a stale
    one), it replaces the link with a file of the step's own, never the shared file.
    """
    rmtree_force(step_cache)
    step_cache.mkdir(parents=True)
    if shared is None or not shared.is_dir():
        return 0
    shared = shared.absolute()  # links are followed from inside the step, whatever its cwd
    links = 0
    for rel_dir, names in _shared_files(shared):
        folder = step_cache / rel_dir
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            os.symlink(shared / rel_dir / name, folder / name)
            links += 1
    return links


def learn(step_cache: Path, shared: Path, exclude: Iterable[Path] = ()) -> int:
    """Compile into `shared` the installed modules that a step compiled itself; return how many.

    Only the names of the step's files are used: each one names a source file, which is compiled
    here from the installation when it lies under `interpreter_dirs()` and outside `exclude`.
    A step can therefore make the worker compile installed modules it did not import, and
    nothing else.
    """
    roots = interpreter_dirs()
    excluded = [Path(os.path.realpath(p)) for p in exclude]
    _clear_stale_staging(shared)
    made: set[Path] = set()  # folders known to exist, so that each file costs no mkdir
    compiled = 0
    for source, rel, optimize in _compiled_by_step(step_cache):
        real = Path(os.path.realpath(source))
        if not any(real.is_relative_to(r) for r in roots) or any(real.is_relative_to(x) for x in excluded):
            continue
        target = shared / rel
        if _fresh(target, source):
            continue
        try:
            _compile(source, target, shared / _STAGING, optimize, made)
        except (OSError, py_compile.PyCompileError, ValueError) as exc:
            _log.debug("could not compile %s into the shared bytecode cache: %s", source, exc)
            continue
        compiled += 1
    return compiled


def _shared_files(shared: Path) -> Iterator[tuple[str, list[str]]]:
    for dirpath, dirnames, filenames in os.walk(shared):
        rel_dir = os.path.relpath(dirpath, shared)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != _STAGING]
            continue
        names = [n for n in filenames if n.endswith(".pyc")]
        if names:
            yield rel_dir, names


def _compiled_by_step(step_cache: Path) -> Iterator[tuple[Path, str, int]]:
    """(source, path relative to the prefix, optimization level) of each file a step compiled."""
    seen = 0
    # os.walk does not follow links: a step's link to a folder elsewhere is not looked into.
    for dirpath, _dirnames, filenames in os.walk(step_cache):
        rel_dir = os.path.relpath(dirpath, step_cache)
        for name in filenames:
            seen += 1
            if seen > _MAX_ENTRIES:
                return
            match = _PYC.match(name)
            if rel_dir == "." or match is None or os.path.islink(os.path.join(dirpath, name)):
                continue
            source = Path("/", rel_dir, match["stem"] + ".py")
            if source.is_file():
                yield source, os.path.join(rel_dir, name), int(match["opt"] or 0)


def _fresh(target: Path, source: Path) -> bool:
    """Whether `target` is a timestamp-checked file of this interpreter that matches `source`."""
    try:
        with open(target, "rb") as f:
            header = f.read(16)
        stat = source.stat()
    except OSError:
        return False
    if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER or int.from_bytes(header[4:8], "little"):
        return False
    mtime = int.from_bytes(header[8:12], "little")
    size = int.from_bytes(header[12:16], "little")
    return mtime == int(stat.st_mtime) & 0xFFFFFFFF and size == stat.st_size & 0xFFFFFFFF


def _compile(source: Path, target: Path, staging: Path, optimize: int, made: set[Path]) -> None:
    # Staged under a name of this process and renamed into place: concurrent workers compiling
    # the same module each replace the file whole, and readers never see half of one.
    for folder in (staging, target.parent):
        if folder not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(folder)
    staged = staging / f"{os.getpid()}-{threading.get_ident()}-{next(_staged)}.pyc"
    try:
        py_compile.compile(
            str(source),
            cfile=str(staged),
            doraise=True,
            optimize=optimize,
            invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP,
        )
        os.replace(staged, target)
    finally:
        if staged.exists():
            staged.unlink()


def _clear_stale_staging(shared: Path) -> None:
    staging = shared / _STAGING
    try:
        entries = list(os.scandir(staging))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > _STALE_STAGING_S:
                os.unlink(entry.path)
        except OSError:
            continue
