from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.trials.conftest import Campaign, pid_running
from trials.entrypoint import (
    build_env,
    collect_metrics,
    parse_report_line,
    placeholders,
    render_command,
    run_command,
)
from trials.errors import CommandError, TemplateError
from trials.layout import TrialPaths
from trials.spec import MetricSpec

# -- command templates --------------------------------------------------------------------------


def test_render_keeps_values_with_spaces_as_one_argument() -> None:
    argv = render_command(
        "python train.py --name {name} --lr {lr} --seed {seed} --out={output_dir} --layers {layers}",
        {"name": "big model; rm -rf /", "lr": 0.001, "layers": [64, 64]},
        7,
        {"output_dir": "/tmp/out dir"},
    )
    assert argv == [
        "python",
        "train.py",
        "--name",
        "big model; rm -rf /",
        "--lr",
        "0.001",
        "--seed",
        "7",
        "--out=/tmp/out dir",
        "--layers",
        "[64, 64]",
    ]


def test_render_handles_quotes_braces_and_format_specs() -> None:
    argv = render_command(
        """python -c 'print({{"a": 1}})' "--lr {lr:.1e}" {model.depth}""", {"lr": 0.0003, "model.depth": 4}, 0, {}
    )
    assert argv == ["python", "-c", 'print({"a": 1})', "--lr 3.0e-04", "4"]


def test_unknown_placeholders_are_named_with_the_known_ones() -> None:
    with pytest.raises(TemplateError) as info:
        render_command("python train.py --lr {learning_rate}", {"lr": 0.1}, 0, {"output_dir": "/o"})
    message = str(info.value)
    assert "{learning_rate}" in message and "known names: lr, output_dir, seed" in message
    with pytest.raises(TemplateError, match="stray brace"):
        render_command("python -c 'x = {'", {}, 0, {})
    with pytest.raises(TemplateError, match="quotes"):
        render_command("python 'unclosed", {}, 0, {})
    with pytest.raises(TemplateError, match="empty placeholder"):
        render_command("python {}", {}, 0, {})


def test_placeholders_lists_the_names_a_template_uses() -> None:
    assert placeholders("python t.py --lr {lr} --seed {seed} {{literal}} --o {output_dir}") == {
        "lr",
        "seed",
        "output_dir",
    }


# -- running a command --------------------------------------------------------------------------


def script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def test_output_is_streamed_to_the_log_and_to_the_callers_thread(tmp_path: Path) -> None:
    argv = script(
        tmp_path,
        """
        import sys
        for i in range(100):
            print(f"line {i}", flush=True)
        print("to stderr", file=sys.stderr)
        """,
    )
    seen: list[str] = []
    threads: set[int] = set()

    def on_line(line: str) -> None:
        seen.append(line)
        threads.add(threading.get_ident())

    log = tmp_path / "logs" / "train.log"
    outcome = run_command(argv, cwd=tmp_path, env={}, budget_s=10, log_path=log, on_line=on_line, tail_lines=3)
    assert outcome.returncode == 0 and not outcome.timed_out
    assert seen[:2] == ["line 0", "line 1"] and seen[-1] == "to stderr" and len(seen) == 101
    assert threads == {threading.get_ident()}
    assert outcome.output_tail == "line 98\nline 99\nto stderr"
    assert log.read_text().splitlines()[-1] == "to stderr"


def test_budget_kills_the_whole_process_group_including_a_stubborn_grandchild(tmp_path: Path) -> None:
    argv = script(
        tmp_path,
        """
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", (
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)")])
        print(f"grandchild {child.pid}", flush=True)
        time.sleep(60)
        """,
    )
    lines: list[str] = []
    started = time.monotonic()
    outcome = run_command(
        argv, cwd=tmp_path, env={}, budget_s=1.5, log_path=tmp_path / "log", on_line=lines.append, grace_s=0.5
    )
    assert outcome.timed_out and outcome.returncode != 0
    assert 1.4 < outcome.duration_s < 2.5
    assert time.monotonic() - started < 6
    assert "ready" in lines
    grandchild = int(next(line for line in lines if line.startswith("grandchild")).split()[1])
    assert not pid_running(grandchild)


def test_processes_left_behind_by_a_finished_command_are_stopped(tmp_path: Path) -> None:
    argv = script(
        tmp_path,
        """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", (
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)")],
            stdout=subprocess.DEVNULL)
        print(f"straggler {child.pid}", flush=True)
        """,
    )
    lines: list[str] = []
    outcome = run_command(
        argv, cwd=tmp_path, env={}, budget_s=10, log_path=tmp_path / "log", on_line=lines.append, grace_s=0.3
    )
    assert outcome.returncode == 0 and not outcome.timed_out
    assert not pid_running(int(lines[0].split()[1]))


def test_a_stop_request_ends_the_command(tmp_path: Path) -> None:
    argv = script(tmp_path, "import time\nprint('ARBORIST_REPORT {}', flush=True)\ntime.sleep(60)\n")
    stop = threading.Event()
    outcome = run_command(
        argv, cwd=tmp_path, env={}, budget_s=20, log_path=tmp_path / "log", on_line=lambda _l: stop.set(), stop=stop
    )
    assert outcome.stopped and not outcome.timed_out and outcome.duration_s < 10


def test_a_callback_that_raises_stops_the_command_and_propagates(tmp_path: Path) -> None:
    argv = script(tmp_path, "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n")
    pids: list[int] = []

    def on_line(line: str) -> None:
        pids.append(int(line))
        raise SystemExit(0)  # what Ray Tune's report does to end a stopped trial

    with pytest.raises(SystemExit):
        run_command(argv, cwd=tmp_path, env={}, budget_s=20, log_path=tmp_path / "log", on_line=on_line)
    assert pids and not pid_running(pids[0])


def test_a_missing_program_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no such program"):
        run_command(
            ["no-such-trainer-xyz"], cwd=tmp_path, env={"PATH": "/usr/bin"}, budget_s=5, log_path=tmp_path / "l"
        )
    (tmp_path / "train.sh").write_text("#!/bin/sh\n")
    with pytest.raises(CommandError, match="permission denied"):
        run_command(["./train.sh"], cwd=tmp_path, env={}, budget_s=5, log_path=tmp_path / "l")


# -- reports and metrics ------------------------------------------------------------------------


def test_report_lines() -> None:
    assert parse_report_line('ARBORIST_REPORT {"step": 100, "val_loss": 1.9}') == {"step": 100, "val_loss": 1.9}
    assert parse_report_line('INFO:root:ARBORIST_REPORT {"step": 1} trailing') == {"step": 1}
    assert parse_report_line("ARBORIST_REPORT {broken") is None
    assert parse_report_line("ARBORIST_REPORT [1, 2]") is None
    assert parse_report_line("epoch 3 loss 1.2") is None


def test_metrics_from_the_json_file_and_from_the_output(tmp_path: Path) -> None:
    metrics_file = tmp_path / "metrics.json"
    metrics_file.write_text(json.dumps({"accuracy": 0.93, "memory_gb": 12, "note": "x"}))
    output = "epoch 1\ntest loss: 2.50\nepoch 2\ntest loss: 1.93\nval acc=0.80\n"
    specs = [
        MetricSpec("accuracy"),
        MetricSpec("memory_gb"),
        MetricSpec("test_loss", regex=r"test loss: (\S+)"),
        MetricSpec("val_acc", regex=r"val acc=(?P<value>[\d.]+)"),
    ]
    values, problems = collect_metrics(metrics_file, output, specs)
    assert problems == []
    assert values == {"accuracy": 0.93, "memory_gb": 12.0, "test_loss": 1.93, "val_acc": 0.8}


def test_metric_problems_say_what_to_do(tmp_path: Path) -> None:
    metrics_file = tmp_path / "metrics.json"
    specs = [MetricSpec("accuracy"), MetricSpec("loss", regex=r"loss: (\S+)")]
    _, problems = collect_metrics(metrics_file, "", specs)
    assert problems[0].startswith(f"metrics file {metrics_file} was not written")
    assert "$ARBORIST_METRICS_FILE" in problems[0]
    assert problems[1].startswith("metric loss was not found in the evaluate output")

    metrics_file.write_text('{"accuracy": NaN, "f1": Infinity, "ok": true, "name": "high"}')
    more = [MetricSpec("f1"), MetricSpec("ok"), MetricSpec("name"), MetricSpec("missing")]
    values, problems = collect_metrics(metrics_file, "loss: nan\n", specs + more)
    assert values == {}
    assert problems == [
        "metric accuracy is nan in the metrics file; the evaluate step must write a finite number",
        "metric loss is nan in the evaluate output; the evaluate step must print a finite number",
        "metric f1 is inf in the metrics file; the evaluate step must write a finite number",
        "metric ok is True in the metrics file, not a number; the evaluate step must write a finite number",
        "metric name is 'high' in the metrics file, not a number; the evaluate step must write a finite number",
        "metric missing is missing from the metrics file (it has: accuracy, f1, name, ok); "
        "the evaluate step must write it to $ARBORIST_METRICS_FILE",
    ]
    metrics_file.write_text("[0.9]")
    _, problems = collect_metrics(metrics_file, "", [MetricSpec("accuracy")], step="train")
    assert "not an object" in problems[0] and "the train step must write" in problems[0]


# -- environment --------------------------------------------------------------------------------


def test_the_environment_is_built_from_scratch(campaign: Campaign, tmp_path: Path) -> None:
    spec = campaign.spec(inherit_env=["WANDB_API_KEY"], env={"OMP_NUM_THREADS": "2"}, evaluate_env={"HELDOUT": "/d"})
    paths = TrialPaths.for_trial(tmp_path, "t1")
    parent = {
        "PATH": "/usr/bin",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "OPENAI_API_KEY": "sk-secret",
        "WANDB_API_KEY": "passed on purpose",
        "HOME": "/root",
        "CUDA_VISIBLE_DEVICES": "1",
        "ARBORIST_SEED": "999",
    }
    train = build_env(spec, paths, "train", parent)
    evaluate = build_env(spec, paths, "evaluate", parent)
    assert "AWS_SECRET_ACCESS_KEY" not in train and "OPENAI_API_KEY" not in train
    assert train["WANDB_API_KEY"] == "passed on purpose"
    # The interpreter running arborist leads PATH, so `python` in a command is that one.
    assert train["PATH"] == f"{os.path.dirname(sys.executable)}:/usr/bin"
    assert train["CUDA_VISIBLE_DEVICES"] == "1" and train["OMP_NUM_THREADS"] == "2"
    assert train["HOME"] == str(paths.home) and train["TMPDIR"] == str(paths.tmp)
    assert train["ARBORIST_SEED"] == "1" and train["ARBORIST_BUDGET_S"] == "20"
    assert train["ARBORIST_PARAMS"] == str(paths.params_file)
    assert "ARBORIST_METRICS_FILE" not in train and "HELDOUT" not in train
    assert evaluate["ARBORIST_METRICS_FILE"] == str(paths.metrics_file) and evaluate["HELDOUT"] == "/d"
    single = campaign.spec(evaluate=None)
    assert build_env(single, paths, "train", parent)["ARBORIST_METRICS_FILE"] == str(paths.metrics_file)


def test_a_trial_dies_with_the_worker_that_runs_it(tmp_path: Path) -> None:
    # The worker runs a trial command, then is killed with SIGKILL (no cleanup code runs).
    worker = script(
        tmp_path,
        f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from trials.process import run_command
        run_command([sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"],
                    cwd=Path("."), env={{}}, budget_s=60, log_path=Path("trial.log"), on_line=print)
        """,
    )
    proc = subprocess.Popen(worker, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    trial_pid = int(proc.stdout.readline())
    assert pid_running(trial_pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while pid_running(trial_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_running(trial_pid)
