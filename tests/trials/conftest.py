"""Fixtures of the trials tests: a tiny real project, its campaign repository and bundle."""

from __future__ import annotations

import difflib
import json
import os
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from trials.runner import run_trial
from trials.spec import CodeChange, EntrypointSpec, MetricSpec, TrialResult, TrialSpec
from trials.worktree import CampaignRepo, snapshot_project

PY = shlex.quote(sys.executable)

# The train step: behaviour is chosen by the "mode" param so one project covers every case.
TRAIN_PY = textwrap.dedent(
    """
    import json, os, sys, time
    import model
    from hostile import HOSTILE
    from evallib import metric

    params = json.load(open(os.environ["ARBORIST_PARAMS"]))
    seed = int(os.environ["ARBORIST_SEED"])
    out = os.environ["ARBORIST_OUTPUT_DIR"]
    mode = params.get("mode", "ok")
    for step in (1, 2):
        print("ARBORIST_REPORT " + json.dumps({"step": step, "loss": 1.0 / step}), flush=True)
    if mode == "crash":
        print("boom: CUDA out of memory", file=sys.stderr)
        sys.exit(3)
    if mode in ("hang", "slow"):
        time.sleep(60)
    if mode == "tamper":
        with open("evaluate.py", "a") as f:
            f.write("\\n# the train step was here\\n")
    if mode == "env":
        with open(os.path.join(out, "train_env.json"), "w") as f:
            json.dump(dict(os.environ), f)
    if mode == "plant":
        try:  # the metrics folder does not exist in the train step's sandbox
            with open(os.path.join(out, "..", "metrics", "metrics.json"), "w") as f:
                json.dump({"accuracy": 99.0}, f)
        except OSError:
            pass
    if mode in HOSTILE:
        HOSTILE[mode](params, out)
    score = metric.clip(model.SCORE + params.get("lr", 0.0) + seed / 100)
    if mode == "nan":
        score = float("nan")
    with open(os.path.join(out, "model.json"), "w") as f:
        json.dump({"score": score, "write_metrics": mode not in ("nometrics", "plant")}, f)
    if "ARBORIST_METRICS_FILE" in os.environ:  # only in single-command mode
        with open(os.environ["ARBORIST_METRICS_FILE"], "w") as f:
            json.dump({"accuracy": score}, f)
    print(f"test loss: {1 - score:.4f}")
    """
)

EVALUATE_PY = textwrap.dedent(
    """
    import json, os
    from evallib import metric

    out = os.environ["ARBORIST_OUTPUT_DIR"]
    with open(os.path.join(out, "model.json")) as f:
        model = json.load(f)
    if os.environ.get("DUMP_ENV"):  # next to the metrics: the output dir is read-only here
        dump = os.path.dirname(os.environ["ARBORIST_METRICS_FILE"])
        with open(os.path.join(dump, "evaluate_env.json"), "w") as f:
            json.dump(dict(os.environ), f)
        with open(os.path.join(dump, "evaluate_cwd.json"), "w") as f:  # the room goes with the trial
            json.dump(sorted(os.path.relpath(os.path.join(d, n)) for d, ds, fs in os.walk(".") for n in ds + fs), f)
    if model["write_metrics"]:
        with open(os.environ["ARBORIST_METRICS_FILE"], "w") as f:
            json.dump({"accuracy": model["score"]}, f)
    print("test loss: 9.9999")  # an earlier, intermediate evaluation
    print(f"test loss: {metric.loss(model['score']):.4f}")
    """
)

METRIC_PY = textwrap.dedent(
    """
    def clip(x):
        return x


    def loss(score):
        return 1 - score
    """
)


# What a hostile change does from inside the train step; each entry is chosen by mode.
HOSTILE_PY = textwrap.dedent(
    """
    import glob, json, os, signal, subprocess, sys, time

    SHADOW = SHADOW_JSON


    def shadow(params, out):
        with open("json.py", "w") as f:  # at the worktree root, next to evaluate.py
            f.write(SHADOW)


    def daemon(params, out):
        # Leaves the process group and the session, then rewrites the metrics after evaluate.
        target = os.path.join(out, "..", "metrics", "metrics.json")
        code = (
            "import os, sys, time\\n"
            "open(sys.argv[2], 'w').close()\\n"
            "time.sleep(30)\\n"
            "open(sys.argv[1], 'w').write('{\\"accuracy\\": 99.0}')\\n"
        )
        ready = os.path.join(out, "daemon.ready")
        subprocess.Popen([sys.executable, "-c", code, target, ready, params["token"]], start_new_session=True)
        while not os.path.exists(ready):
            time.sleep(0.01)


    def snoop(params, out):
        seen = {}
        for path in params["paths"]:
            try:
                with open(path, "rb") as f:
                    seen[path] = f.read().decode(errors="replace")
            except OSError as exc:
                seen[path] = type(exc).__name__
        for path in params.get("write", []):
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write("#!/bin/sh\\ntouch /tmp/planted\\n")
                seen[path] = "written"
            except OSError as exc:
                seen[path] = type(exc).__name__
        with open(os.path.join(out, "snoop.json"), "w") as f:
            json.dump(seen, f)


    def procscan(params, out):
        found = []
        for environ in glob.glob("/proc/*/environ") + [f"/proc/{os.getppid()}/environ"]:
            try:
                with open(environ, "rb") as f:
                    if params["secret"].encode() in f.read():
                        found.append(environ)
            except OSError:
                pass
        with open(os.path.join(out, "procscan.json"), "w") as f:
            json.dump({"found": found, "pids": len(glob.glob("/proc/[0-9]*"))}, f)


    def chatty(params, out):
        line = "x" * 99
        for _ in range(params["lines"]):
            print(line)


    def bigout(params, out):
        with open(os.path.join(out, "checkpoint.bin"), "wb") as f:
            f.write(b"\\0" * (params["mb"] << 20))
        time.sleep(60)


    def hog(params, out):
        blob = bytearray(params["mb"] << 20)
        print(len(blob))


    def spin(params, out):
        while True:
            pass


    def trap(params, out):
        def flush(signum, frame):
            with open(os.path.join(out, "flushed"), "w") as f:
                f.write("checkpoint")
            sys.exit(0)

        signal.signal(signal.SIGTERM, flush)
        print("trapping", flush=True)
        time.sleep(60)


    HOSTILE = {f.__name__: f for f in (shadow, daemon, snoop, procscan, chatty, bigout, hog, spin, trap)}
    """
)

# A json module that passes for the real one, except that in the evaluate step it reports 99
# for every metric: what a shadow module at the worktree root would do to an evaluator.
SHADOW_JSON = textwrap.dedent(
    """
    import os, sys
    _here, _path = os.path.dirname(os.path.abspath(__file__)), sys.path
    sys.path = [p for p in _path if os.path.abspath(p or ".") != _here]
    del sys.modules["json"]
    import json as _real
    sys.path = _path
    sys.modules["json"] = _real
    if sys.argv and sys.argv[0].endswith("evaluate.py"):
        _dump = _real.dump
        _real.dump = lambda obj, f, **kw: _dump({k: 99.0 for k in obj}, f, **kw)
    """
)


def git(cwd: Path, *args: str) -> str:
    """The real git, with an identity, for the repositories the tests build by hand."""
    proc = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return proc.stdout


def unified_diff(path: str, old: str | None, new: str | None) -> str:
    """A unified diff as `git diff` prints it (None: the file does not exist on that side)."""
    lines = difflib.unified_diff(
        (old or "").splitlines(keepends=True),
        (new or "").splitlines(keepends=True),
        fromfile=f"a/{path}" if old is not None else "/dev/null",
        tofile=f"b/{path}" if new is not None else "/dev/null",
    )
    mode = "new file mode 100644\n" if old is None else "deleted file mode 100644\n" if new is None else ""
    return f"diff --git a/{path} b/{path}\n{mode}" + "".join(lines)


def write_project(root: Path) -> Path:
    files = {
        "train.py": TRAIN_PY,
        "evaluate.py": EVALUATE_PY,
        "model.py": "SCORE = 0.5\n",
        "evallib/__init__.py": "",
        "evallib/metric.py": METRIC_PY,
        "requirements.txt": "numpy\n",
        "hostile.py": HOSTILE_PY.replace("SHADOW_JSON", repr(SHADOW_JSON)),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def score_diff(old: float, new: float) -> str:
    return unified_diff("model.py", f"SCORE = {old}\n", f"SCORE = {new}\n")


@dataclass
class Campaign:
    project: Path
    repo: CampaignRepo
    root: str
    bundle_id: str
    bundle_bytes: bytes
    scratch: Path
    fetches: list[str] = field(default_factory=list)

    def fetch(self, bundle_id: str) -> bytes:
        self.fetches.append(bundle_id)
        return self.bundle_bytes

    def protected(self, *paths: str) -> dict[str, str]:
        hashes = self.repo.protected_hashes(self.root, paths)
        assert all(hashes.values()), hashes
        return {path: digest for path, digest in hashes.items() if digest}

    def spec(self, *, params: dict[str, Any] | None = None, **changes: Any) -> TrialSpec:
        entrypoint = EntrypointSpec(
            train=f"{PY} train.py",
            evaluate=f"{PY} evaluate.py",
            budget_s=20.0,
            evaluate_budget_s=20.0,
        )
        spec = TrialSpec(
            trial_id="t1",
            node_id="n0",
            seed=1,
            params={"lr": 0.1, **(params or {})},
            base_commit=self.root,
            bundle_id=self.bundle_id,
            chain=[],
            entrypoint=entrypoint,
            metrics=[MetricSpec("accuracy"), MetricSpec("test_loss", regex=r"test loss: (\S+)")],
            protected=self.protected("evaluate.py", "evallib"),
            scratch_dir=str(self.scratch),
            packages=["numpy"],
            data_files=["requirements.txt"],
        )
        entry_changes = {k: changes.pop(k) for k in list(changes) if hasattr(entrypoint, k)}
        return replace(spec, entrypoint=replace(entrypoint, **entry_changes), **changes)


def run(campaign: Campaign, spec: TrialSpec) -> TrialResult:
    """Run one trial; its result survives a JSON round trip (as it does on its way to the tree)."""
    result = run_trial(spec, campaign.fetch)
    assert TrialResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    return result


def folder(spec: TrialSpec) -> Path:
    """Where a trial's folder is in its scratch directory."""
    return Path(spec.scratch_dir) / "trials" / spec.trial_id


@pytest.fixture
def campaign(tmp_path: Path) -> Campaign:
    project = write_project(tmp_path / "project")
    repo_dir = tmp_path / "campaign" / "repo"
    root = snapshot_project(project, repo_dir)
    repo = CampaignRepo(repo_dir)
    bundle = tmp_path / "campaign" / "snapshot.bundle"
    bundle_id = repo.bundle(bundle)
    return Campaign(project, repo, root, bundle_id, bundle.read_bytes(), tmp_path / "scratch")


@pytest.fixture
def chain_of(campaign: Campaign) -> Callable[..., list[CodeChange]]:
    def make(*diffs: str) -> list[CodeChange]:
        return [CodeChange(change_id=f"c{i}", aspect="architecture", diff=d) for i, d in enumerate(diffs, 1)]

    return make


def pid_running(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


@pytest.fixture(autouse=True)
def _no_git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    # arborist's own commits must work on machines without a git identity.
    for name in list(os.environ):
        if name.startswith("GIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def processes_with(token: str) -> list[int]:
    """Pids of the processes whose command line holds `token` (a marker a test's process carries)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
