"""Running the real git binary with an environment that cannot be hijacked by the caller's.

No hook ever runs (core.hooksPath=/dev/null): a hook planted in a cached or campaign repository
would otherwise run on the next checkout with arborist's rights. And git gets only what it
needs from the environment, so nothing git starts (a filter, a pager, an editor) sees a key.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from trials.errors import GitError

# Variables that would point git at another repository or index than the one we name.
_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)

# Arborist's own commits must not be signed or hooked by the user's global settings.
NO_SIGN = ("-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false")
NO_HOOKS = ("-c", f"core.hooksPath={os.devnull}")

# All of the caller's environment that git is given; credentials are not in it.
_PASSED_VARS = ("PATH", "LANG", "TZ", "TMPDIR")
# Where git looks for the user's excludes when it reads the user's own project.
_USER_CONFIG_VARS = ("HOME", "XDG_CONFIG_HOME")
# A HOME that holds nothing: no ~/.gitconfig, ~/.git-credentials or ~/.ssh reached from our repos.
NEUTRAL_HOME = "/nonexistent-arborist-home"


def git_env(*, isolated: bool, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for one git call.

    isolated=True ignores the user's global and system git config: the repositories arborist
    owns must behave the same on every machine (no autocrlf, hooks templates, signing).
    isolated=False is for reading the user's own project, where their excludes matter.
    """
    env = {k: os.environ[k] for k in _PASSED_VARS if k in os.environ}
    if not isolated:
        env.update({k: os.environ[k] for k in _USER_CONFIG_VARS if k in os.environ})
        passed = {k: v for k, v in os.environ.items() if k not in _LOCATION_VARS}
        env.update({k: v for k, v in passed.items() if k.startswith("GIT_")})
    else:
        env["HOME"] = NEUTRAL_HOME
        env["GIT_CONFIG_GLOBAL"] = os.devnull
        env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_OPTIONAL_LOCKS"] = "0"  # reading the user's repo must not even refresh its index
    env["LC_ALL"] = "C"  # git's messages are matched and shown; keep them in one language
    if extra:
        env.update(extra)
    return env


def run_git(
    args: Sequence[str],
    *,
    cwd: Path,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    isolated: bool = True,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run `git args...` in cwd; raise GitError with git's stderr when check and it fails."""
    try:
        proc = subprocess.run(
            ["git", *NO_HOOKS, *args],
            cwd=cwd,
            input=stdin if stdin is not None else b"",
            capture_output=True,
            env=git_env(isolated=isolated, extra=env),
            check=False,
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed or not on PATH; install git on this machine") from exc
    if check and proc.returncode != 0:
        raise GitError(
            f"git {' '.join(args[:2])} failed (exit {proc.returncode}) in {cwd}: "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    return proc


def git_text(
    args: Sequence[str],
    *,
    cwd: Path,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    isolated: bool = True,
) -> str:
    """stdout of a successful git call, decoded and stripped."""
    proc = run_git(args, cwd=cwd, stdin=stdin, env=env, isolated=isolated)
    return proc.stdout.decode(errors="replace").strip()


def stderr_text(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stderr.decode(errors="replace").strip()
