"""The entrypoint contract: how a trial's commands are spelled, and what environment they get.

Running a command lives in `trials.process`, reading its numbers in `trials.metrics`; both are
re-exported here so that the contract can be used from one module.
"""

from __future__ import annotations

import json
import os
import shlex
import site
import string
import sys
from collections.abc import Mapping
from typing import Any, Literal

from trials.errors import TemplateError
from trials.layout import TrialPaths
from trials.metrics import collect_metrics, parse_report_line
from trials.process import KILL_GRACE_S, CommandOutcome, run_command
from trials.spec import TrialSpec

__all__ = [
    "COMMAND_FIELDS",
    "KILL_GRACE_S",
    "SAFE_ENV_VARS",
    "CommandOutcome",
    "Step",
    "build_env",
    "collect_metrics",
    "command_fields",
    "parse_report_line",
    "placeholders",
    "render_command",
    "run_command",
]

Step = Literal["setup", "train", "evaluate"]

# Placeholders arborist fills in besides {seed} and the params (metrics_file: evaluate step,
# or train in single-command mode).
COMMAND_FIELDS = ("output_dir", "trial_id", "params_file", "metrics_file")

# Passed through from the worker: what finds programs and libraries, the locale, and which
# accelerators and how many threads this trial may use. Nothing else: credentials in the
# worker's environment must not reach code an LLM wrote.
SAFE_ENV_VARS = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "PYTHONHASHSEED",
    "TERM",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "LD_LIBRARY_PATH",  # CUDA and conda installs find their libraries through it
    "CUDA_HOME",
)

_FORMATTER = string.Formatter()


def render_command(template: str, params: Mapping[str, Any], seed: int, extra: Mapping[str, str]) -> list[str]:
    """argv for a command template such as `python train.py --lr {lr} --seed {seed}`.

    The template is split into arguments first and filled in after, so a value with spaces
    stays one argument and cannot inject options. `{{` and `}}` are literal braces; a format
    spec (`{lr:.2e}`) is applied to the raw value.
    """
    values: dict[str, Any] = {**params, "seed": seed, **extra}
    return [_render_token(token, values, template) for token in _split(template)]


def placeholders(template: str) -> set[str]:
    """Names a template refers to, so that a config can be checked before anything runs."""
    names: set[str] = set()
    for token in _split(template):
        for _literal, name, _spec, _conversion in _parse(token, template):
            if name is not None:
                names.add(name)
    return names


def command_fields(spec: TrialSpec, paths: TrialPaths, step: Step) -> dict[str, str]:
    """The arborist placeholders a step's command may use, with this trial's values."""
    fields = {
        "output_dir": str(paths.output),
        "trial_id": spec.trial_id,
        "params_file": str(paths.params_file),
    }
    if _gets_metrics_file(spec, step):
        fields["metrics_file"] = str(paths.metrics_file)
    return fields


def build_env(
    spec: TrialSpec, paths: TrialPaths, step: Step, parent: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of one step, built from scratch rather than inherited.

    HOME and TMPDIR point into the trial folder, so code that looks for ~/.aws or ~/.netrc
    finds nothing and temporary files die with the trial. This is hygiene, not a sandbox:
    the command still runs as the worker's user (trials.sandbox is what contains it).

    The evaluate step gets a HOME of its own and Python in isolated-path mode: only the
    evaluator's room (the clean protected files, its cwd) is on its import path, whatever
    PYTHONPATH the entrypoint sets and whatever modules the worktree holds.
    """
    parent = os.environ if parent is None else parent
    env = {name: parent[name] for name in SAFE_ENV_VARS if name in parent}
    # `python` in a command means the interpreter running arborist (a virtualenv's, usually),
    # not whichever one happens to come first on the worker's PATH.
    interpreter_dir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join([interpreter_dir, *(p for p in env.get("PATH", "").split(os.pathsep) if p)])
    home, tmp = (paths.evaluate_home, paths.evaluate_home) if step == "evaluate" else (paths.home, paths.tmp)
    env.update(
        {
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "TMP": str(tmp),
            "TEMP": str(tmp),
            "PYTHONUNBUFFERED": "1",  # reports must arrive while training, not at exit
            # Bytecode goes to a per-step cache in the trial folder, and Python then reads no
            # __pycache__ from the worktree: importing the evaluator leaves protected folders
            # untouched, and the train step cannot plant compiled code for the evaluate step.
            # Under the sandbox that cache links to the machine's read-only cache of the
            # installation's bytecode (trials.bytecode).
            "PYTHONPYCACHEPREFIX": str(paths.pycache / step),
        }
    )
    user_base = site.getuserbase()
    if os.path.isdir(user_base):
        # `pip install --user` packages are found relative to HOME, which moved.
        env["PYTHONUSERBASE"] = user_base
    env.update({name: parent[name] for name in spec.entrypoint.inherit_env if name in parent})
    env.update(spec.entrypoint.env)
    if step == "evaluate":
        env.update(spec.entrypoint.evaluate_env)
        env.pop("PYTHONUSERBASE", None)
        env.update({"PYTHONSAFEPATH": "1", "PYTHONNOUSERSITE": "1", "PYTHONPATH": str(paths.room)})
    env.update(
        {
            "ARBORIST_PARAMS": str(paths.params_file),
            "ARBORIST_SEED": str(spec.seed),
            "ARBORIST_BUDGET_S": _number(spec.entrypoint.budget_s),
            "ARBORIST_TRIAL_ID": spec.trial_id,
            "ARBORIST_OUTPUT_DIR": str(paths.output),
        }
    )
    if _gets_metrics_file(spec, step):
        env["ARBORIST_METRICS_FILE"] = str(paths.metrics_file)
    return env


def _gets_metrics_file(spec: TrialSpec, step: Step) -> bool:
    # With a separate evaluator, the train step has no say in the metrics.
    return step == "evaluate" or (step == "train" and spec.entrypoint.evaluate is None)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _split(template: str) -> list[str]:
    try:
        return shlex.split(template)
    except ValueError as exc:
        raise TemplateError(f"command {template!r} cannot be split into arguments ({exc}); check its quotes") from exc


def _parse(token: str, template: str) -> list[tuple[str, str | None, str | None, str | None]]:
    try:
        parsed = list(_FORMATTER.parse(token))
    except ValueError as exc:
        raise TemplateError(
            f"command {template!r} has a stray brace ({exc}); write literal braces as {{{{ and }}}}"
        ) from exc
    for _literal, name, _spec, _conversion in parsed:
        if name == "":
            raise TemplateError(
                f"command {template!r} has an empty placeholder {{}}; name what goes there, e.g. {{seed}}"
            )
    return parsed


def _render_token(token: str, values: Mapping[str, Any], template: str) -> str:
    out = []
    for literal, name, spec, conversion in _parse(token, template):
        out.append(literal)
        if name is None:
            continue
        if name not in values:
            raise TemplateError(
                f"unknown placeholder {{{name}}} in command {template!r}; known names: {', '.join(sorted(values))}"
            )
        value = values[name]
        if conversion == "r":
            value = repr(value)
        elif conversion in ("s", "a"):
            value = str(value) if conversion == "s" else ascii(value)
        if spec:
            try:
                out.append(format(value, spec))
            except (TypeError, ValueError) as exc:
                raise TemplateError(
                    f"placeholder {{{name}:{spec}}} in command {template!r} cannot format {value!r} ({exc})"
                ) from exc
        else:
            out.append(_as_argument(value))
    return "".join(out)


def _as_argument(value: Any) -> str:
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return str(value)
