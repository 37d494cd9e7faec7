"""The campaign repository, its bundle, and the per-trial worktrees built from it.

Driver side: `snapshot_project` copies the user's project into a repository arborist owns, and
`CampaignRepo` records each node as a commit and a branch there. Worker side: the snapshot
travels as a git bundle, is cached once per machine (`ensure_cached_repo`), and each trial gets
a detached worktree of it with the node's chain of diffs applied (`materialize`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trials.errors import (
    BundleError,
    ChainApplyError,
    GitError,
    ProjectError,
    TrialSetupError,
)
from trials.fsutil import atomic_write_bytes, rmtree_force
from trials.gitutil import NO_SIGN, git_text, run_git, stderr_text
from trials.hashing import hash_path
from trials.locks import file_lock
from trials.patch import touched_paths
from trials.spec import CodeChange

ROOT_BRANCH = "arborist/root"
NODE_BRANCH_PREFIX = "arborist/node/"
PARAMS_PATH = ".arborist/params.json"
IDENTITY = ("arborist", "arborist@localhost")

# Environments and caches that are rebuilt, not part of the code being tested.
SNAPSHOT_EXCLUDED_NAMES = frozenset(
    {".git", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".ipynb_checkpoints"}
)
SNAPSHOT_EXCLUDED_SUFFIXES = (".pyc",)
# `.arborist/` at the top of a snapshot is where each node commit keeps its params.
RESERVED_TOP_LEVEL = ".arborist"

_BUNDLE_ID = re.compile(r"^[0-9a-f]{8,64}$")
_LOCK_NAME = "arborist-worktrees.lock"


# ---------------------------------------------------------------------------------------------
# Snapshot (driver side)


def snapshot_project(project: Path, repo_dir: Path) -> str:
    """Copy the user's project into a new campaign repository; return the snapshot commit.

    A git work tree contributes what git would show (tracked and untracked-but-not-ignored
    files, as they are on disk now); a plain folder contributes everything but caches and
    virtual environments. The user's project is only read, never written.
    """
    project = Path(project).expanduser()
    if not project.exists():
        raise ProjectError(
            f"project {project} does not exist; point the campaign config at the folder that holds your training code"
        )
    if not project.is_dir():
        raise ProjectError(
            f"project {project} is not a directory; point the campaign config at the folder "
            "that holds your training code, not at a file in it"
        )
    project = project.resolve()
    repo_dir = Path(repo_dir).expanduser().resolve()
    if repo_dir == project:
        raise ProjectError(
            f"the campaign repository {repo_dir} cannot be the project itself; choose a campaign folder of its own"
        )
    if repo_dir.exists() and any(repo_dir.iterdir()):
        raise ProjectError(
            f"campaign repository folder {repo_dir} already exists and is not empty; use a new "
            "campaign folder or remove the old one"
        )
    entries = [rel for rel in _project_entries(project) if not _inside(project / rel, repo_dir)]
    if not entries:
        raise ProjectError(
            f"project {project} is empty (no files to snapshot, after leaving out ignored files "
            "and caches); add your training code to it"
        )

    created = not repo_dir.exists()
    try:
        repo_dir.mkdir(parents=True, exist_ok=True)
        run_git(["init", "-q", f"--initial-branch={ROOT_BRANCH}", str(repo_dir)], cwd=repo_dir)
        for key, value in (
            ("user.name", IDENTITY[0]),
            ("user.email", IDENTITY[1]),
            ("core.autocrlf", "false"),
            ("core.filemode", "true"),
        ):
            run_git(["config", key, value], cwd=repo_dir)
        for rel in entries:
            _copy_entry(project / rel, repo_dir / rel)
        # --force: what to include was decided above; the project's own .gitignore must not
        # drop files it tracks anyway.
        run_git(["add", "--all", "--force", "--", "."], cwd=repo_dir)
        run_git(
            [*NO_SIGN, "commit", "-q", "--no-verify", "-m", f"arborist: snapshot of {project}"],
            cwd=repo_dir,
        )
        return git_text(["rev-parse", "HEAD"], cwd=repo_dir)
    except BaseException:
        # Leave no half-built repository behind, so that a retry starts clean.
        if created:
            rmtree_force(repo_dir)
        else:
            for child in repo_dir.iterdir():
                rmtree_force(child)
        raise


def project_files(project: Path) -> list[str]:
    """The relative paths a snapshot of the project would hold (what `editable` and `protected` match)."""
    return _project_entries(Path(project).resolve())


def _project_entries(project: Path) -> list[str]:
    """Relative paths (files, symlinks, submodule folders) that make up the project."""
    probe = run_git(["rev-parse", "--is-inside-work-tree"], cwd=project, isolated=False, check=False)
    if probe.returncode == 0 and probe.stdout.strip() == b"true":
        return _git_entries(project)
    message = stderr_text(probe)
    if probe.returncode != 0 and "not a git repository" not in message:
        # e.g. "dubious ownership": copying the folder blindly would include ignored files.
        raise ProjectError(f"cannot read the git repository at {project}: {message}")
    return _plain_entries(project)


def _git_entries(project: Path) -> list[str]:
    def listing(*flags: str) -> list[str]:
        out = run_git(["ls-files", "-z", *flags], cwd=project, isolated=False).stdout
        return [p for p in out.decode(errors="surrogateescape").split("\0") if p]

    tracked = listing("--cached")
    untracked = [
        rel
        for rel in listing("--others", "--exclude-standard")
        if not any(_snapshot_excluded(part) for part in Path(rel).parts)
    ]
    seen: set[str] = set()
    entries = []
    for rel in tracked + untracked:
        # Tracked files deleted on disk are left out: the snapshot is the project as it is now.
        if rel in seen or not os.path.lexists(project / rel):
            continue
        if Path(rel).parts[0] == RESERVED_TOP_LEVEL:
            continue
        seen.add(rel)
        entries.append(rel)
    return entries


def _plain_entries(project: Path) -> list[str]:
    entries = []
    for dirpath, dirnames, filenames in os.walk(project, followlinks=False):
        base = Path(dirpath)
        kept = []
        for name in dirnames:
            if _snapshot_excluded(name) or (base == project and name == RESERVED_TOP_LEVEL):
                continue
            if (base / name).is_symlink():
                entries.append((base / name).relative_to(project).as_posix())
            else:
                kept.append(name)
        dirnames[:] = kept
        entries.extend(
            (base / name).relative_to(project).as_posix() for name in filenames if not _snapshot_excluded(name)
        )
    return sorted(entries)


def _snapshot_excluded(name: str) -> bool:
    return name in SNAPSHOT_EXCLUDED_NAMES or name.endswith(SNAPSHOT_EXCLUDED_SUFFIXES)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _ignore_excluded(_folder: str, names: list[str]) -> list[str]:
    return [n for n in names if _snapshot_excluded(n)]


def _copy_entry(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():  # a submodule: its files, without its .git
        shutil.copytree(src, dst, symlinks=True, ignore=_ignore_excluded)
    else:
        shutil.copy2(src, dst)  # copy2 keeps the executable bit


# ---------------------------------------------------------------------------------------------
# Campaign repository (driver side)


class CampaignRepo:
    """The repository arborist owns: the snapshot on `arborist/root`, one branch per node."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not (self.path / ".git").is_dir():
            raise ValueError(
                f"{self.path} is not a campaign repository (no .git folder); create it with snapshot_project"
            )

    def head_of(self, branch: str) -> str:
        head = self._branch_head(branch)
        if head is None:
            raise ValueError(f"branch {branch} does not exist in the campaign repository {self.path}")
        return head

    @property
    def root_commit(self) -> str:
        return self.head_of(ROOT_BRANCH)

    def check_diff(self, commit: str, diff: str) -> str | None:
        """None when `diff` applies cleanly to `commit`, else git's explanation.

        Works on a throw-away index, so it touches no worktree, ref or index of the repository
        and can run any number of times, concurrently.
        """
        with self._scratch_index(commit) as env:
            proc = run_git(
                ["apply", "--check", "--cached", "--whitespace=nowarn", "-"],
                cwd=self.path,
                stdin=patch_bytes(diff),
                env=env,
                check=False,
            )
        if proc.returncode == 0:
            return None
        return stderr_text(proc) or f"git apply failed with exit code {proc.returncode}"

    def changed_files(self, commit: str, diff: str) -> dict[str, tuple[str, str]] | None:
        """Each text file `diff` touches, as (before, after) at `commit`; None if it does not apply.

        Like check_diff it works on a throw-away index, so it is safe to call concurrently.
        """
        with self._scratch_index(commit) as env:
            proc = run_git(
                ["apply", "--cached", "--whitespace=nowarn", "-"],
                cwd=self.path, stdin=patch_bytes(diff), env=env, check=False,
            )
            if proc.returncode != 0:
                return None
            files = {}
            for path in touched_paths(diff):
                before = self._blob_text(f"{commit}:{path}", env)
                after = self._blob_text(f":{path}", env)
                if before is None or after is None:
                    return None  # binary or unreadable: the caller falls back to the diff's text
                files[path] = (before or "", after or "")
        return files

    def _blob_text(self, spec: str, env: dict[str, str]) -> str | None:
        proc = run_git(["cat-file", "-p", spec], cwd=self.path, env=env, check=False)
        if proc.returncode != 0:
            return ""  # absent on this side: created or deleted by the diff
        try:
            return proc.stdout.decode()
        except UnicodeDecodeError:
            return None

    def commit_node(
        self,
        parent_commit: str,
        node_id: str,
        diff: str | None,
        params: dict[str, Any],
        message: str,
    ) -> str:
        """Commit parent + diff + the node's params, and point `arborist/node/<id>` at it.

        Calling it again for the same node with the same content returns the existing commit,
        so a resumed campaign does not fork its own history.
        """
        branch = NODE_BRANCH_PREFIX + node_id
        if run_git(["check-ref-format", "--branch", branch], cwd=self.path, check=False).returncode:
            raise ValueError(f"node id {node_id!r} cannot be used in a git branch name")
        params_blob = (json.dumps(params, sort_keys=True, indent=2) + "\n").encode()
        with self._scratch_index(parent_commit) as env:
            if diff is not None:
                proc = run_git(
                    ["apply", "--cached", "--whitespace=nowarn", "-"],
                    cwd=self.path,
                    stdin=patch_bytes(diff),
                    env=env,
                    check=False,
                )
                if proc.returncode != 0:
                    raise ChainApplyError(node_id, stderr_text(proc))
            blob = git_text(["hash-object", "-w", "--stdin"], cwd=self.path, stdin=params_blob)
            run_git(
                ["update-index", "--add", "--cacheinfo", f"100644,{blob},{PARAMS_PATH}"],
                cwd=self.path,
                env=env,
            )
            tree = git_text(["write-tree"], cwd=self.path, env=env)
        existing = self._branch_head(branch)
        if existing and self._tree_and_parents(existing) == f"{tree} {self._resolve(parent_commit)}":
            return existing
        commit = git_text([*NO_SIGN, "commit-tree", tree, "-p", parent_commit, "-m", message], cwd=self.path)
        run_git(["update-ref", f"refs/heads/{branch}", commit], cwd=self.path)
        return commit

    def bundle(self, dest: Path) -> str:
        """Write the snapshot branch as a git bundle to dest; return its id (content hash)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        run_git(["bundle", "create", "-q", str(tmp.resolve()), ROOT_BRANCH], cwd=self.path)
        os.replace(tmp, dest)
        return bundle_id_of(dest.read_bytes())

    def file_sha256(self, commit: str, relpath: str) -> str | None:
        """sha256 of a file's content in a commit; None if it is not a file there."""
        proc = run_git(["cat-file", "blob", f"{commit}:{relpath}"], cwd=self.path, check=False)
        if proc.returncode != 0:
            return None
        return hashlib.sha256(proc.stdout).hexdigest()

    def hash_paths(self, commit: str, paths: Iterable[str]) -> dict[str, str | None]:
        """hash_path of each path as checked out from `commit` (absolute paths: as they are).

        The hashes come from a real checkout, hashed by the same function the runner uses, so
        expected and observed hashes agree whatever git does at checkout.
        """
        paths = list(paths)
        relative = [p for p in paths if not os.path.isabs(p)]
        hashes: dict[str, str | None] = {p: hash_path(Path(p)) for p in paths if os.path.isabs(p)}
        if relative:
            with tempfile.TemporaryDirectory(prefix="arborist-hash-") as tmp:
                tree = materialize(self.path, commit, [], Path(tmp) / "wt")
                try:
                    hashes.update({p: hash_path(tree.path / p) for p in relative})
                finally:
                    tree.remove()
        return {p: hashes[p] for p in paths}

    def protected_hashes(self, commit: str, paths: Iterable[str]) -> dict[str, str | None]:
        """Expected hashes for TrialSpec.protected; None marks a path that does not exist.

        The caller reports missing protected paths as a config error: a protected path that
        is not there protects nothing.
        """
        return self.hash_paths(commit, paths)

    def _branch_head(self, branch: str) -> str | None:
        proc = run_git(
            ["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"],
            cwd=self.path,
            check=False,
        )
        return proc.stdout.decode().strip() if proc.returncode == 0 else None

    def _tree_and_parents(self, commit: str) -> str:
        return git_text(["show", "-s", "--format=%T %P", commit], cwd=self.path)

    def _resolve(self, commit: str) -> str:
        return git_text(["rev-parse", "--verify", f"{commit}^{{commit}}"], cwd=self.path)

    def _scratch_index(self, commit: str) -> _ScratchIndex:
        return _ScratchIndex(self.path, commit)


class _ScratchIndex:
    """A temporary index file loaded with a commit's tree; yields the env that selects it."""

    def __init__(self, repo: Path, commit: str) -> None:
        self.repo = repo
        self.commit = commit
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> dict[str, str]:
        self._tmp = tempfile.TemporaryDirectory(prefix="arborist-index-")
        env = {"GIT_INDEX_FILE": str(Path(self._tmp.name) / "index")}
        try:
            run_git(["read-tree", f"{self.commit}^{{tree}}"], cwd=self.repo, env=env)
        except BaseException:
            self._tmp.cleanup()
            raise
        return env

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def patch_bytes(diff: str) -> bytes:
    # git apply reports "corrupt patch" when the last line has no newline; editors and LLMs
    # often drop it.
    return (diff if diff.endswith("\n") else diff + "\n").encode()


def bundle_id_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Worker side


def ensure_cached_repo(scratch_dir: Path, bundle_id: str, fetch_bundle: Callable[[str], bytes]) -> Path:
    """A bare clone of the campaign bundle, cached per machine at `<scratch>/repos/<id>.git`.

    The first trial on a machine fetches and clones it; concurrent trials wait on a file lock
    and then reuse it. The clone is renamed into place only when complete, so a killed trial
    never leaves a half-cloned cache behind.
    """
    if not _BUNDLE_ID.match(bundle_id):
        raise BundleError(f"bundle id {bundle_id!r} is not a hex content hash")
    scratch_dir = Path(scratch_dir)
    repos = scratch_dir / "repos"
    repo = repos / f"{bundle_id}.git"
    if repo.is_dir():
        return repo
    with file_lock(scratch_dir / "locks" / f"bundle-{bundle_id}.lock"):
        if repo.is_dir():
            return repo
        try:
            data = fetch_bundle(bundle_id)
        except Exception as exc:
            raise BundleError(f"could not fetch campaign bundle {bundle_id}: {type(exc).__name__}: {exc}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if not actual.startswith(bundle_id):
            raise BundleError(
                f"campaign bundle {bundle_id} arrived with content hash {actual[:16]}; it was "
                "corrupted in transit or replaced after the campaign started; restart the "
                "campaign so that a fresh bundle is made"
            )
        bundle_file = scratch_dir / "bundles" / f"{bundle_id}.bundle"
        atomic_write_bytes(bundle_file, data)
        repos.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".clone-", dir=repos) as tmp:
            staging = Path(tmp) / "repo.git"
            run_git(["clone", "-q", "--bare", str(bundle_file.resolve()), str(staging)], cwd=repos)
            os.rename(staging, repo)
    return repo


@dataclass(frozen=True)
class Worktree:
    """A detached worktree of a cached repository, owned by one trial."""

    repo: Path
    path: Path
    base_commit: str

    def remove(self) -> None:
        """Remove the worktree and its registration; quiet if it is already gone."""
        if not self.repo.is_dir():
            rmtree_force(self.path)
            return
        with _repo_lock(self.repo):
            _drop_worktree(self.repo, self.path)


def materialize(cached_repo: Path, base_commit: str, chain: list[CodeChange], dest: Path) -> Worktree:
    """Check out base_commit at dest and apply the chain's diffs in order.

    Raises ChainApplyError naming the first change that does not apply (the worktree is
    removed again), GitError for anything else git refuses.
    """
    cached_repo = Path(cached_repo)
    dest = Path(dest).absolute()
    if run_git(["cat-file", "-e", f"{base_commit}^{{commit}}"], cwd=cached_repo, check=False).returncode:
        raise TrialSetupError(
            f"base commit {base_commit} is not in the campaign repository {cached_repo}; the "
            "trial names a snapshot that its bundle does not hold"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    # worktree add/remove/prune edit shared metadata of the repository; trials on one machine
    # share it, so they take turns.
    with _repo_lock(cached_repo):
        if os.path.lexists(dest):
            _drop_worktree(cached_repo, dest)
        run_git(["worktree", "prune"], cwd=cached_repo)
        run_git(["worktree", "add", "-q", "--detach", str(dest), base_commit], cwd=cached_repo)
    tree = Worktree(repo=cached_repo, path=dest, base_commit=base_commit)
    try:
        for change in chain:
            proc = run_git(
                ["apply", "--whitespace=nowarn", "-"],
                cwd=dest,
                stdin=patch_bytes(change.diff),
                check=False,
            )
            if proc.returncode != 0:
                raise ChainApplyError(change.change_id, stderr_text(proc))
    except BaseException:
        tree.remove()
        raise
    return tree


def _drop_worktree(repo: Path, path: Path) -> None:
    try:
        # --force twice: also when the trial left untracked files or the worktree is locked.
        run_git(["worktree", "remove", "--force", "--force", str(path)], cwd=repo, check=False)
        if os.path.lexists(path):
            rmtree_force(path)
        run_git(["worktree", "prune"], cwd=repo)
    except (GitError, OSError):
        if os.path.lexists(path):
            rmtree_force(path)


def _repo_lock(repo: Path) -> AbstractContextManager[None]:
    git_dir = repo / ".git" if (repo / ".git").is_dir() else repo
    return file_lock(git_dir / _LOCK_NAME)
