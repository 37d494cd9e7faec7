from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.trials.conftest import Campaign
from trials.fingerprint import take_fingerprint
from trials.spec import Fingerprint


def test_software_data_and_budget_are_recorded(campaign: Campaign, tmp_path: Path) -> None:
    worktree = tmp_path / "wt"
    (worktree / "data").mkdir(parents=True)
    (worktree / "requirements.txt").write_text("numpy==2.0\n")
    (worktree / "data" / "train.csv").write_text("1,2\n")
    external = tmp_path / "heldout.csv"
    external.write_text("3,4\n")
    spec = campaign.spec(budget_s=300.0, packages=["numpy", "no-such-package-xyz"], data_files=["data", str(external)])

    fp = take_fingerprint(spec, worktree)
    assert fp.python == platform.python_version()
    assert fp.packages == f"no-such-package-xyz=missing,numpy={importlib.metadata.version('numpy')}"
    assert fp.lock_hash == hashlib.sha256(b"numpy==2.0\n").hexdigest()
    assert fp.budget_s == 300.0
    assert fp.cpu_count > 0 and fp.cpu_model
    assert len(fp.data_hash) == 64

    # Data that changes changes the fingerprint; a different worktree of the same data does not.
    other = tmp_path / "wt2"
    (other / "data").mkdir(parents=True)
    (other / "data" / "train.csv").write_text("1,2\n")
    (other / "requirements.txt").write_text("numpy==2.0\n")
    assert take_fingerprint(spec, other).comparability_key() == fp.comparability_key()
    external.write_text("changed\n")
    assert take_fingerprint(spec, worktree).data_hash != fp.data_hash


def test_a_missing_worktree_still_gives_a_fingerprint(campaign: Campaign, tmp_path: Path) -> None:
    fp = take_fingerprint(campaign.spec(), tmp_path / "never-created")
    assert fp.lock_hash == "" and fp.python and fp.budget_s == 20.0


def test_visible_gpus_follow_cuda_visible_devices(
    campaign: Campaign, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert take_fingerprint(campaign.spec(), tmp_path).gpu_count == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert take_fingerprint(campaign.spec(), tmp_path).gpu_count == 0


def test_one_budget_written_two_ways_is_one_fingerprint() -> None:
    """from_dict shares fingerprints through a cache that sees 60 == 60.0: the key must not depend
    on which spelling came first."""
    as_int = Fingerprint.from_dict({"budget_s": 60, "gpu_count": 2.0, "python": "3.11"})
    as_float = Fingerprint(budget_s=60.0, gpu_count=2, python="3.11")
    assert as_int.comparability_key() == as_float.comparability_key()
    assert type(as_int.budget_s) is float and type(as_int.gpu_count) is int
    assert Fingerprint(budget_s=60.5).budget_s == 60.5 and Fingerprint(gpu_count=1.5).gpu_count == 1.5  # type: ignore[arg-type]
    assert Fingerprint.from_dict({"budget_s": 30.0}).comparability_key() != as_float.comparability_key()


def _fake_tool(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Fake tools first on PATH, and the per-process probe caches emptied around the test."""
    from trials import fingerprint

    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fingerprint._all_gpus.cache_clear()
    fingerprint._cuda_version.cache_clear()
    yield folder
    fingerprint._all_gpus.cache_clear()
    fingerprint._cuda_version.cache_clear()


def test_a_cuda_toolkit_without_a_gpu_is_not_a_cuda_version(campaign: Campaign, tmp_path: Path, fake_bin: Path) -> None:
    _fake_tool(fake_bin, "nvcc", 'echo "Cuda compilation tools, release 13.0, V13.0.48"\n')
    _fake_tool(fake_bin, "nvidia-smi", "echo 'NVIDIA-SMI has failed: no devices were found' >&2; exit 9\n")
    fp = take_fingerprint(campaign.spec(), tmp_path)
    assert (fp.gpu_count, fp.cuda_version, fp.gpu_model) == (0, "", "")


def test_gpus_driver_and_cuda_come_from_nvidia_smi(
    campaign: Campaign, tmp_path: Path, fake_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_tool(fake_bin, "nvidia-smi", (
        'if [ "$1" = "--query-gpu=index,uuid,name,driver_version" ]; then\n'
        '  echo "0, GPU-aaaa, NVIDIA H100 80GB HBM3, 550.54.15"\n'
        '  echo "1, GPU-bbbb, NVIDIA H100 80GB HBM3, 550.54.15"\n'
        'else echo "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |"; fi\n'
    ))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    fp = take_fingerprint(campaign.spec(), tmp_path)
    assert (fp.gpu_count, fp.gpu_model, fp.gpu_driver, fp.cuda_version) == (
        1, "NVIDIA H100 80GB HBM3", "550.54.15", "12.4"
    )
