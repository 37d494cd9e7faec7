"""Content hashes of files and folders: one function for expected and observed hashes.

The expected hashes of protected paths are computed by hash_path on a checked-out snapshot,
and the runner checks them with the same hash_path on the trial's worktree, so any git
checkout effect (line endings, filters) is the same on both sides.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

# Caches that Python and tools write next to the code they run: importing a protected module
# must not make the trial look tampered with.
HASH_EXCLUDED_NAMES = frozenset({".git", "__pycache__", ".mypy_cache", ".pytest_cache", ".ipynb_checkpoints"})
HASH_EXCLUDED_SUFFIXES = (".pyc",)

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_hash_excluded(name: str) -> bool:
    return name in HASH_EXCLUDED_NAMES or name.endswith(HASH_EXCLUDED_SUFFIXES)


def hash_path(path: Path) -> str | None:
    """sha256 hex of a file's bytes, or of a folder's sorted (relative path, content) entries.

    None when the path does not exist. A file's hash equals sha256 of its git blob content,
    so a single protected file can also be checked against `git cat-file`. Inside a folder,
    symlinks are hashed by their target text (never followed, so a link cannot loop or leave
    the folder), and caches (__pycache__, *.pyc) are skipped.
    """
    if not path.exists():
        return None
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for rel, entry_hash in sorted(_dir_entries(path)):
        digest.update(f"{rel}\0{entry_hash}\n".encode())
    return digest.hexdigest()


def _dir_entries(root: Path) -> Iterable[tuple[str, str]]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        kept_dirs = []
        for name in dirnames:
            if is_hash_excluded(name):
                continue
            if (base / name).is_symlink():
                yield _link_entry(root, base / name)
            else:
                kept_dirs.append(name)
        dirnames[:] = kept_dirs
        for name in filenames:
            if is_hash_excluded(name):
                continue
            full = base / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                yield _link_entry(root, full)
            else:
                yield rel, "file:" + file_sha256(full)


def _link_entry(root: Path, link: Path) -> tuple[str, str]:
    return link.relative_to(root).as_posix(), "link:" + os.readlink(link)


def combined_hash(paths: Iterable[str], base: Path) -> str:
    """One hash over several paths (relative to base, or absolute), missing ones included.

    The path strings as given go into the hash, not where they resolve to, so trials on
    different worktrees of the same data agree.
    """
    digest = hashlib.sha256()
    for name in sorted(set(paths)):
        resolved = Path(name) if os.path.isabs(name) else base / name
        digest.update(f"{name}\0{hash_path(resolved) or 'missing'}\n".encode())
    return digest.hexdigest()
