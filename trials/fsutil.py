"""File-system helpers that must work on trees a trial may have left in any state."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any


def rmtree_force(path: Path) -> None:
    """Remove a file or folder, also when the trial made parts of it read-only."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    if not path.exists():
        return

    def retry_writable(func: Any, failed: str, _exc: Any) -> None:
        # Training code can chmod its outputs read-only; make the parent writable and retry.
        for target in (os.path.dirname(failed), failed):
            try:
                mode = os.lstat(target).st_mode
                if not stat.S_ISLNK(mode):
                    os.chmod(target, mode | stat.S_IRWXU)
            except OSError:
                pass
        func(failed)

    shutil.rmtree(path, onerror=retry_writable)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers never see it half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
