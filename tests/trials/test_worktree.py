from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from tests.trials.conftest import Campaign, git, score_diff, unified_diff
from trials.errors import BundleError, ChainApplyError, ProjectError
from trials.hashing import hash_path
from trials.spec import CodeChange
from trials.worktree import CampaignRepo, ensure_cached_repo, materialize, snapshot_project


def tree_files(repo: Path, ref: str = "arborist/root") -> set[str]:
    return set(git(repo, "ls-tree", "-r", "--name-only", ref).split())


def folder_state(root: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# -- snapshot -----------------------------------------------------------------------------------


def test_snapshot_of_git_repo_takes_what_git_shows_and_leaves_the_repo_alone(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    git(user, "init", "-q")
    (user / ".gitignore").write_text("*.log\nsecrets/\n")
    (user / "train.py").write_text("lr = 0.1\n")
    (user / "gone.py").write_text("old\n")
    (user / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (user / "run.sh").chmod(0o755)
    git(user, "add", "-A")
    git(user, "commit", "-q", "-m", "init")
    (user / "train.py").write_text("lr = 0.2  # uncommitted edit\n")
    (user / "new_module.py").write_text("x = 1\n")
    (user / "debug.log").write_text("ignored\n")
    (user / "secrets").mkdir()
    (user / "secrets" / "key.txt").write_text("ignored too\n")
    (user / "gone.py").unlink()
    status_before = git(user, "status", "--porcelain")  # refreshes the index once, before the snapshot
    state_before = folder_state(user)
    head_before = git(user, "rev-parse", "HEAD")

    repo_dir = tmp_path / "campaign" / "repo"
    commit = snapshot_project(user, repo_dir)
    state_after = folder_state(user)

    assert tree_files(repo_dir) == {".gitignore", "train.py", "run.sh", "new_module.py"}
    assert git(repo_dir, "show", "arborist/root:train.py") == "lr = 0.2  # uncommitted edit\n"
    assert "100755 blob" in git(repo_dir, "ls-tree", "arborist/root", "run.sh")
    assert git(repo_dir, "rev-parse", "arborist/root").strip() == commit
    assert git(repo_dir, "log", "-1", "--format=%s %an").startswith(f"arborist: snapshot of {user}")
    # The user's project is untouched: same bytes and times (.git included), status and HEAD.
    assert state_after == state_before
    assert git(user, "status", "--porcelain") == status_before
    assert git(user, "rev-parse", "HEAD") == head_before


def test_snapshot_of_plain_folder_leaves_out_caches_and_environments(tmp_path: Path) -> None:
    project = tmp_path / "plain"
    for rel in (
        "train.py",
        "pkg/model.py",
        "pkg/__pycache__/model.cpython-311.pyc",
        "stale.pyc",
        ".venv/bin/python",
        "venv/lib/x.py",
        "nested/.git/HEAD",
        "nested/code.py",
        ".ipynb_checkpoints/nb.ipynb",
        ".mypy_cache/x.json",
        ".gitignore",
    ):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(rel)
    (project / ".gitignore").write_text("train.py\n")  # a plain folder has no ignore rules
    (project / "tool.sh").write_text("#!/bin/sh\n")
    (project / "tool.sh").chmod(0o755)
    state_before = folder_state(project)

    repo_dir = tmp_path / "repo"
    snapshot_project(project, repo_dir)

    assert tree_files(repo_dir) == {".gitignore", "train.py", "pkg/model.py", "nested/code.py", "tool.sh"}
    assert "100755 blob" in git(repo_dir, "ls-tree", "arborist/root", "tool.sh")
    assert folder_state(project) == state_before
    assert not (project / ".git").exists()


def test_snapshot_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="does not exist"):
        snapshot_project(tmp_path / "nowhere", tmp_path / "r1")
    (tmp_path / "file.py").write_text("x\n")
    with pytest.raises(ProjectError, match="not a directory"):
        snapshot_project(tmp_path / "file.py", tmp_path / "r2")
    (tmp_path / "empty" / "__pycache__").mkdir(parents=True)
    with pytest.raises(ProjectError, match="is empty"):
        snapshot_project(tmp_path / "empty", tmp_path / "r3")
    assert isinstance(ProjectError("x"), ValueError)
    assert not (tmp_path / "r3").exists()  # nothing half-built is left behind


# -- campaign repository ------------------------------------------------------------------------


def test_commit_node_makes_a_branch_with_the_diff_and_params(campaign: Campaign) -> None:
    repo = campaign.repo
    params = {"lr": 0.3, "batch": 32, "mode": "ok"}
    commit = repo.commit_node(campaign.root, "n1", score_diff(0.5, 0.6), params, "n1: higher score")

    path = repo.path
    assert repo.head_of("arborist/node/n1") == commit
    assert git(path, "rev-parse", f"{commit}^").strip() == campaign.root
    assert git(path, "show", f"{commit}:model.py") == "SCORE = 0.6\n"
    assert git(path, "show", f"{commit}:.arborist/params.json") == json.dumps(params, sort_keys=True, indent=2) + "\n"
    assert git(path, "log", "-1", "--format=%s", commit).strip() == "n1: higher score"
    # Again with the same content (a resumed campaign): the same commit, no fork.
    assert repo.commit_node(campaign.root, "n1", score_diff(0.5, 0.6), params, "n1: higher score") == commit
    # A params-only child of n1 keeps n1's code and replaces the params.
    child = repo.commit_node(commit, "n2", None, {"lr": 0.4}, "n2: lr")
    assert git(path, "show", f"{child}:model.py") == "SCORE = 0.6\n"
    assert json.loads(git(path, "show", f"{child}:.arborist/params.json")) == {"lr": 0.4}
    assert git(path, "status", "--porcelain") == ""
    with pytest.raises(ValueError, match="branch"):
        repo.commit_node(campaign.root, "bad..id", None, {}, "x")
    with pytest.raises(ValueError, match="does not exist"):
        repo.head_of("arborist/node/nope")


def test_check_diff_reports_whether_a_diff_applies_without_side_effects(campaign: Campaign) -> None:
    repo = campaign.repo
    refs_before = git(repo.path, "show-ref")
    assert repo.check_diff(campaign.root, score_diff(0.5, 0.6)) is None
    assert repo.check_diff(campaign.root, score_diff(0.5, 0.6).rstrip("\n")) is None  # lost final newline
    error = repo.check_diff(campaign.root, score_diff(0.9, 0.6))
    assert error is not None and "model.py" in error
    assert repo.check_diff(campaign.root, unified_diff("new.py", None, "x = 1\n")) is None
    assert repo.check_diff(campaign.root, unified_diff("model.py", None, "x = 1\n")) is not None  # exists
    for _ in range(3):
        assert repo.check_diff(campaign.root, score_diff(0.5, 0.6)) is None
    assert git(repo.path, "show-ref") == refs_before
    assert git(repo.path, "status", "--porcelain") == ""


def test_expected_hashes_come_from_the_snapshot(campaign: Campaign, tmp_path: Path) -> None:
    outside = tmp_path / "heldout.csv"
    outside.write_text("1,2\n")
    hashes = campaign.repo.protected_hashes(campaign.root, ["evaluate.py", "evallib/", "missing.py", str(outside)])
    evaluate = (campaign.project / "evaluate.py").read_bytes()
    assert hashes["evaluate.py"] == hashlib.sha256(evaluate).hexdigest()
    assert hashes["evaluate.py"] == campaign.repo.file_sha256(campaign.root, "evaluate.py")
    assert hashes["evallib/"] == hash_path(campaign.project / "evallib")
    assert hashes["missing.py"] is None
    assert hashes[str(outside)] == hashlib.sha256(b"1,2\n").hexdigest()
    assert campaign.repo.file_sha256(campaign.root, "missing.py") is None
    assert git(campaign.repo.path, "worktree", "list").count("\n") == 1  # the temporary one is gone


def test_hash_path_of_a_folder_ignores_caches_but_sees_content_and_names(tmp_path: Path) -> None:
    folder = tmp_path / "evallib"
    folder.mkdir()
    (folder / "a.py").write_text("a\n")
    first = hash_path(folder)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert hash_path(folder) == first
    (folder / "a.py").write_text("b\n")
    assert hash_path(folder) != first
    (folder / "a.py").write_text("a\n")
    (folder / "b.py").write_text("")
    assert hash_path(folder) != first
    assert hash_path(tmp_path / "missing") is None


# -- worker side --------------------------------------------------------------------------------


def test_bundle_is_fetched_once_per_machine_and_checked(campaign: Campaign, tmp_path: Path) -> None:
    scratch = tmp_path / "worker"
    first = ensure_cached_repo(scratch, campaign.bundle_id, campaign.fetch)
    second = ensure_cached_repo(scratch, campaign.bundle_id, campaign.fetch)
    assert first == second == scratch / "repos" / f"{campaign.bundle_id}.git"
    assert campaign.fetches == [campaign.bundle_id]
    assert git(first, "rev-parse", "arborist/root").strip() == campaign.root
    assert (scratch / "bundles" / f"{campaign.bundle_id}.bundle").read_bytes() == campaign.bundle_bytes

    with pytest.raises(BundleError, match="content hash"):
        ensure_cached_repo(tmp_path / "other", campaign.bundle_id, lambda _id: b"not the bundle")
    assert not (tmp_path / "other" / "repos" / f"{campaign.bundle_id}.git").exists()

    def failing(_id: str) -> bytes:
        raise ConnectionError("driver unreachable")

    with pytest.raises(BundleError, match="driver unreachable"):
        ensure_cached_repo(tmp_path / "third", campaign.bundle_id, failing)


def test_concurrent_trials_populate_the_cache_once(campaign: Campaign, tmp_path: Path) -> None:
    def slow_fetch(bundle_id: str) -> bytes:
        time.sleep(0.2)
        return campaign.fetch(bundle_id)

    results: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(ensure_cached_repo(tmp_path / "w", campaign.bundle_id, slow_fetch))
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert campaign.fetches == [campaign.bundle_id]


def test_materialize_applies_a_chain_and_removes_cleanly(campaign: Campaign, tmp_path: Path) -> None:
    repo = ensure_cached_repo(tmp_path / "w", campaign.bundle_id, campaign.fetch)
    chain = [
        CodeChange("c1", "architecture", score_diff(0.5, 0.6)),
        CodeChange("c2", "architecture", score_diff(0.6, 0.7)),
        CodeChange("c3", "data", unified_diff("augment.py", None, "FLIP = True\n")),
    ]
    dest = tmp_path / "w" / "trials" / "t1" / "worktree"
    tree = materialize(repo, campaign.root, chain, dest)
    assert (dest / "model.py").read_text() == "SCORE = 0.7\n"
    assert (dest / "augment.py").read_text() == "FLIP = True\n"
    assert os.access(dest / "train.py", os.R_OK)

    # A second attempt of the same trial finds the old worktree (with trial litter) and starts over.
    (dest / "litter.bin").write_bytes(b"x")
    (dest / "ro").mkdir()
    (dest / "ro" / "f").write_text("x")
    (dest / "ro").chmod(stat.S_IRUSR | stat.S_IXUSR)
    tree = materialize(repo, campaign.root, chain[:1], dest)
    assert (dest / "model.py").read_text() == "SCORE = 0.6\n"
    assert not (dest / "litter.bin").exists()

    tree.remove()
    assert not dest.exists()
    assert git(repo, "worktree", "list").count("\n") == 1
    tree.remove()  # already gone: quiet


def test_a_chain_that_does_not_apply_names_the_change(campaign: Campaign, tmp_path: Path) -> None:
    repo = ensure_cached_repo(tmp_path / "w", campaign.bundle_id, campaign.fetch)
    chain = [
        CodeChange("c1", "architecture", score_diff(0.5, 0.6)),
        CodeChange("c2", "architecture", score_diff(0.5, 0.8)),  # made against the wrong parent
    ]
    dest = tmp_path / "w" / "wt"
    with pytest.raises(ChainApplyError) as info:
        materialize(repo, campaign.root, chain, dest)
    assert info.value.change_id == "c2"
    assert "c2" in str(info.value) and "model.py" in str(info.value)
    assert not dest.exists()
    assert git(repo, "worktree", "list").count("\n") == 1


def test_campaign_repo_rejects_a_folder_that_is_not_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="snapshot_project"):
        CampaignRepo(tmp_path)
