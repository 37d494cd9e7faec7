"""A multi-node Ray cluster on loopback for the tests of this folder (tests/cluster/nodes.py).

Starting one takes ~20 s, so a module starts it once and its tests share it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.nodes import LocalCluster, Worker, fake_nvidia_smi

SCRATCH_ENV = "ARBORIST_SCRATCH_DIR"  # the per-node scratch folder (trials/layout.py)
GPU_MODELS = ("NVIDIA Test-GPU A", "NVIDIA Test-GPU B")  # one model per worker node, to tell them apart


@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A head (no CPUs: no trial runs there) and two worker nodes of 2 CPUs and 2 logical GPUs,
    as a KubeRay GPU worker group: each worker has its own scratch folder (its pod's emptyDir)
    and an `nvidia-smi` that lists its GPUs, of a model of its own (GPU_MODELS)."""
    root = tmp_path_factory.mktemp("cluster")
    workers = []
    for i, model in enumerate(GPU_MODELS):
        tools = fake_nvidia_smi(root / f"worker{i}" / "bin", model, 2)
        env = {SCRATCH_ENV: str(root / f"worker{i}" / "scratch"), "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
        workers.append(Worker(cpus=2, gpus=2, env=env))
    with LocalCluster(root, workers) as cluster:
        yield cluster


def worker_scratch(cluster: LocalCluster, index: int) -> Path:
    return Path(cluster.workers[index].env[SCRATCH_ENV])
