"""arborist run | resume | status | report | serve | inject | approve | reject | export | import-log: a
thin layer over orchestrator/api.py, which does the work."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console

from orchestrator import api, report
from orchestrator.api import ApiError
from orchestrator.config import ASPECTS, CampaignConfig, ConfigError
from orchestrator.export_mlflow import ExportError
from orchestrator.history import HistoryError
from orchestrator.inbox import InjectError
from orchestrator.ledger import LedgerError
from orchestrator.progress import ProgressDisplay, progress_line
from orchestrator.proposers.queue import QueueFileError
from orchestrator.tree import ROOT_ID, NodeStatus, SearchTree
from trials.errors import ProjectError

EXIT_FAILED = 1  # the campaign started, then an error stopped it; the message says which
EXIT_USAGE = 2
EXIT_BASELINE_FAILED = 3  # the campaign ran, but its baseline failed: nothing could be compared
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    err = Console(stderr=True, soft_wrap=True)  # a wrapped path cannot be copied back
    try:
        return int(args.func(args))
    except (ConfigError, QueueFileError, LedgerError, InjectError, ProjectError, HistoryError, ApiError,
            ExportError) as exc:
        err.print(f"arborist: error: {exc}", highlight=False, markup=False)
        return EXIT_USAGE
    except BrokenPipeError:
        return 0  # the reader (`| head`) went away; nothing left to say
    except KeyboardInterrupt:
        err.print("arborist: interrupted; completed trials are in the ledger. Continue with `arborist resume`.")
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arborist",
        description="Run ML experiment campaigns as a statistical tree search on Ray.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start a campaign from a config file")
    run.add_argument("config", type=Path, help="campaign config (YAML)")
    run.add_argument("--campaign-dir", type=Path, help="where the campaign lives (overrides campaign_dir)")
    run.add_argument("--quiet", action="store_true", help="no live progress")
    run.set_defaults(func=_run)

    resume = sub.add_parser("resume", help="continue a stopped or crashed campaign from its ledger")
    resume.add_argument("campaign_dir", type=Path)
    resume.add_argument("--quiet", action="store_true")
    resume.set_defaults(func=_resume)

    status = sub.add_parser("status", help="progress of a campaign, running or not")
    status.add_argument("campaign_dir", type=Path)
    status.add_argument("--json", action="store_true", help="print machine-readable JSON")
    status.set_defaults(func=_status)

    rep = sub.add_parser("report", help="write the lab notebook; --json prints the summary")
    rep.add_argument("campaign_dir", type=Path)
    rep.add_argument("--json", action="store_true", help="print the summary as JSON instead")
    rep.add_argument("--out", type=Path, help="notebook path (default CAMPAIGN_DIR/report.md)")
    rep.add_argument("--tsv", type=Path, metavar="FILE",
                     help="also write the decided nodes as an autoresearch-style results.tsv")
    rep.add_argument("--html", type=Path, metavar="FILE", help="write the web view as one self-contained HTML file")
    rep.set_defaults(func=_report)

    srv = sub.add_parser("serve", help="a read-only web view of a campaign, running or not")
    srv.add_argument("campaign_dir", type=Path, metavar="CAMPAIGN_DIR")
    srv.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: pick a free one)")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    srv.set_defaults(func=_serve)

    imp = sub.add_parser(
        "import-log", help="bring an autoresearch-style results.tsv into a campaign's memory",
        description="Read a tab-separated experiment log (commit, val_bpb or the objective, memory_gb, status, "
                    "description) into the campaign's memory as already-tried history: a change it tried is "
                    "rejected as a repeat on the baseline and linked as a revisit elsewhere.",
    )
    imp.add_argument("log", type=Path, metavar="LOG", help="the results.tsv file")
    imp.add_argument("--campaign-dir", type=Path, required=True, help="the campaign's folder")
    imp.add_argument("--config", type=Path, metavar="CFG",
                     help="the config the campaign will run, when the folder holds no campaign yet")
    imp.set_defaults(func=_import_log)

    inj = sub.add_parser(
        "inject", help="add a change to a campaign's queue while it runs (or before a resume)",
        description="Queue one change for the campaign: a code diff with its aspect, or one hyperparameter. "
                    "It is screened like any proposal (memory, validity) before it runs.",
    )
    inj.add_argument("campaign_dir", type=Path, metavar="CAMPAIGN_DIR", help="the folder `arborist run` printed")
    inj.add_argument("--hypothesis", required=True, metavar="TEXT", help="one sentence: what the change does and why")
    inj.add_argument("--aspect", metavar="A", help=f"the aspect of a code change, one of: {', '.join(ASPECTS)}")
    inj.add_argument("--diff", type=Path, metavar="FILE", help="a code change: a unified diff, as `git diff` prints it")
    inj.add_argument("--param", metavar="NAME=VALUE", help="a params change instead; VALUE is read as YAML (lr=0.003)")
    inj.add_argument("--id", dest="item_id", metavar="ID", help="the item's id (default inject-<n>)")
    inj.set_defaults(func=_inject)

    for verdict, status_after, what in (
        ("approve", "PROMOTED", "the results are real: promote it, so it can become the incumbent"),
        ("reject", "PRUNED", "the results are not real (a reward hack): prune it"),
    ):
        cmd = sub.add_parser(
            verdict, help=f"{verdict} a SUSPECT node ({status_after}): {what}",
            description=f"Give a person's verdict on a node the campaign marked SUSPECT: {what}. A running campaign "
                        "applies it at its next step; a stopped one at `arborist resume`.",
        )
        cmd.add_argument("campaign_dir", type=Path, metavar="CAMPAIGN_DIR", help="the folder `arborist run` printed")
        cmd.add_argument("node", metavar="NODE", help="the suspect node's id, as the report lists it (e.g. n7)")
        cmd.set_defaults(func=_verdict, verdict=verdict)

    exp = sub.add_parser(
        "export", help="copy a campaign's trials to MLflow (pip install 'arborist[mlflow]')",
        description="Every finished trial as an MLflow run, nested under a run per node. Exporting again "
                    "brings the runs up to date and adds the new trials; nothing is duplicated.",
    )
    exp.add_argument("campaign_dir", type=Path, metavar="CAMPAIGN_DIR", help="the folder `arborist run` printed")
    exp.add_argument("--mlflow", required=True, metavar="TRACKING_URI",
                     help="the tracking store: sqlite:///PATH/mlflow.db or http://HOST:5000")
    exp.add_argument("--experiment", metavar="NAME", help="the MLflow experiment (default: the campaign's name)")
    exp.set_defaults(func=_export)
    return parser


def _export(args: argparse.Namespace) -> int:
    from orchestrator import export_mlflow

    done = export_mlflow.export(args.campaign_dir.resolve(), args.mlflow, args.experiment)
    print(f"exported to MLflow experiment {done.experiment_name!r} (id {done.experiment_id}) at {args.mlflow}: "
          f"{done.trials_created} trial runs added, {done.trials_updated} updated, {done.trials_unchanged} "
          f"unchanged; {done.nodes_created} node runs added, {done.nodes_updated} updated")
    if done.trials_not_finished:
        print(f"{done.trials_not_finished} trials not finished yet: export again later to add them", file=sys.stderr)
    if done.trials_never_run:
        print(f"{done.trials_never_run} trials requested never ran (the campaign ended first): they have no run",
              file=sys.stderr)
    return 0


def _verdict(args: argparse.Namespace) -> int:
    from orchestrator import campaign
    from orchestrator.inbox import submit_verdict

    campaign_dir = args.campaign_dir.resolve()
    config = campaign.load_campaign_config(campaign_dir)
    tree = report.load_tree(config)
    node = tree.nodes.get(args.node)
    suspects = ", ".join(n.node_id for n in tree.suspect_nodes()) or "none"
    if node is None:
        raise InjectError(f"{args.node} is not a node of campaign {config.name} (suspect nodes: {suspects})")
    if node.status is not NodeStatus.SUSPECT:
        raise InjectError(
            f"{args.node} is {node.status.value}, not SUSPECT; only suspect nodes take a verdict "
            f"(suspect nodes: {suspects})"
        )
    if tree.phase.value == "done":
        raise InjectError(
            f"campaign {config.name} has finished ({tree.finished_reason}); a verdict can no longer change its "
            f"search. Its report lists {args.node} as suspect."
        )
    item = submit_verdict(campaign_dir, args.node, args.verdict)
    print(f"{args.verdict.removesuffix('e')}ed {args.node} ({item['by']})")
    print("a running campaign applies it at its next step; otherwise at `arborist resume`.", file=sys.stderr)
    return 0


def _inject(args: argparse.Namespace) -> int:
    from orchestrator import campaign
    from orchestrator.inbox import inject, parse_param, read_diff

    campaign_dir = args.campaign_dir.resolve()
    config = campaign.load_campaign_config(campaign_dir)
    diff = read_diff(args.diff) if args.diff is not None else None
    param = parse_param(args.param) if args.param is not None else None
    item = inject(
        campaign_dir, config, hypothesis=args.hypothesis, aspect=args.aspect, diff=diff, param=param,
        item_id=args.item_id,
    )
    print(f"queued {item['id']}: {item['hypothesis']}")
    print("a running campaign picks it up at its next expansion; otherwise at `arborist resume`.", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    config = api.campaign_config(args.config, args.campaign_dir)
    if not _start_ray(config):  # before the folder is made: a Ray that will not start leaves nothing behind
        return EXIT_USAGE
    with api.new_campaign(config, args.config, _say) as setup:
        return _drive(config, setup, quiet=args.quiet)


def _resume(args: argparse.Namespace) -> int:
    with api.resumed_campaign(args.campaign_dir, _say) as (config, setup):
        if isinstance(setup, SearchTree):
            return _outcome_code(setup)
        if not _start_ray(config):
            return EXIT_USAGE
        return _drive(config, setup, quiet=args.quiet)


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def _start_ray(config: CampaignConfig) -> bool:
    """Start or join Ray; on failure say why and what to try (Ray's traceback helps nobody here)."""
    try:
        api.start_ray(config)
    except ApiError as exc:
        print(f"arborist: error: {exc}", file=sys.stderr)
        return False
    return True


def _drive(config: CampaignConfig, setup: dict[str, Any] | None, *, quiet: bool) -> int:
    from orchestrator import campaign

    assert config.campaign_dir is not None
    display = ProgressDisplay()
    sigterm = _SigtermStops(Path(config.campaign_dir))
    try:
        with sigterm, display:
            campaign.run(config, setup=setup, on_progress=None if quiet else display.update)
    except (Exception, KeyboardInterrupt) as exc:  # CampaignInterrupted included
        return _ended_early(config, exc, sigterm)
    tree = report.load_tree(config)
    path = report.write_notebook(config, tree)
    print(f"campaign {config.name} finished; report: {path}", file=sys.stderr)
    print(f"summary: arborist report {config.campaign_dir} --json", file=sys.stderr)
    return _outcome_code(tree)


class _SigtermStops:
    """While a campaign runs, SIGTERM (`ray job stop`, `kill`, a pod being deleted) stops it as
    Ctrl-C does: Ray Tune ends the session at its next step, and the driver says how to resume.

    Installed after Ray started, whose own handler exits on the spot. Raising from the handler
    while Ray waits in its C++ code comes out as a SystemError, so the handler hands over to the
    SIGINT handler instead: Tune's while it runs (which sets a flag), else Python's (which raises
    KeyboardInterrupt where Ray expects it). The resume line is printed at once: `ray job stop`
    kills the driver a few seconds later (RAY_JOB_STOP_WAIT_TIME_S), often before the session
    has ended. A second SIGTERM kills at once.
    """

    def __init__(self, campaign_dir: Path) -> None:
        self.received: int | None = None
        self.announced = False  # the resume line is out
        self._campaign_dir = campaign_dir
        self._previous: Any = None

    def __enter__(self) -> _SigtermStops:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None and signal.getsignal(signal.SIGTERM) == self._handle:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        from orchestrator import campaign

        self.received = signum
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # A signal that lands in the middle of a write to stderr cannot write there ("reentrant
        # call"): the line then comes after the session ended.
        with contextlib.suppress(RuntimeError):
            print(f"arborist: stopped by {signal.Signals(signum).name}. {campaign.resume_hint(self._campaign_dir)}",
                  file=sys.stderr, flush=True)
            self.announced = True
        on_sigint = signal.getsignal(signal.SIGINT)
        if callable(on_sigint) and on_sigint is not signal.default_int_handler:
            on_sigint(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt


def _ended_early(config: CampaignConfig, exc: BaseException, sigterm: _SigtermStops) -> int:
    """Any end of a started campaign but its finish: say why and how to go on, write the report.

    The resume line comes before the report, which may take a while; after SIGTERM, whose
    handler printed it already, it is not repeated.
    """
    from orchestrator import campaign

    assert config.campaign_dir is not None
    campaign_dir = Path(config.campaign_dir)
    if sigterm.received is not None:
        code = 128 + sigterm.received
        if not sigterm.announced:
            print(f"arborist: stopped by {signal.Signals(sigterm.received).name}.", file=sys.stderr)
    elif isinstance(exc, KeyboardInterrupt | campaign.CampaignInterrupted):
        print(f"arborist: {exc}" if str(exc) else "arborist: interrupted.", file=sys.stderr)
        code = EXIT_INTERRUPTED
    else:
        traceback.print_exception(exc, file=sys.stderr)  # unforeseen: where it happened matters
        cause = (str(exc).strip().splitlines() or [""])[0]
        print(f"arborist: error: the campaign stopped on {type(exc).__name__}: {cause}", file=sys.stderr)
        code = EXIT_FAILED
    try:
        started = campaign.has_events(config)
    except Exception:
        started = True  # a ledger that cannot be read is still a campaign's: resume is the way on
    if not started:
        print(f"arborist: nothing ran in {campaign_dir} (the start failed before its first event): "
              f"`arborist resume {campaign_dir}` starts it, or the same `arborist run` replaces it.", file=sys.stderr)
        return code
    if not sigterm.announced:
        print(f"arborist: every completed trial is in the ledger. {campaign.resume_hint(campaign_dir)}",
              file=sys.stderr, flush=True)
    try:
        path = _write_report(config)
    except Exception as failure:
        print(f"arborist: the report could not be written ({type(failure).__name__}: {failure}); "
              f"`arborist report {campaign_dir}` writes it later.", file=sys.stderr)
    else:
        print(f"report (as far as the campaign got): {path}", file=sys.stderr)
    return code


def _outcome_code(tree: SearchTree) -> int:
    """0 for a campaign that searched; EXIT_BASELINE_FAILED when its baseline never ran cleanly."""
    if ROOT_ID in tree.nodes and tree.root.status is NodeStatus.FAILED:
        print(
            f"arborist: error: the baseline failed, so no change could be tested ({tree.finished_reason}). "
            "Run the entrypoint by hand in the project; the report's failed trials hold the log tails.",
            file=sys.stderr,
        )
        return EXIT_BASELINE_FAILED
    return 0


def _write_report(config: CampaignConfig) -> Path:
    tree = report.load_tree(config)
    return report.write_notebook(config, tree)


def _status(args: argparse.Namespace) -> int:
    progress = api.status(args.campaign_dir)
    if args.json:
        print(json.dumps(progress, indent=2))
        return 0
    suspects = progress["suspects"]
    progress = {**progress, "name": progress["campaign"], "incumbent": _incumbent_brief(progress)}
    print(progress_line(progress))
    if suspects:
        print(f"suspect: {len(suspects)} node(s) await a verdict ({', '.join(suspects)}); see the report, then "
              f"`arborist approve {args.campaign_dir} NODE` or `arborist reject {args.campaign_dir} NODE`")
    if progress["finished_reason"]:
        print(f"finished: {progress['finished_reason']}")
    return 0


def _incumbent_brief(data: dict[str, Any]) -> dict[str, Any] | None:
    inc = data["incumbent"]
    if inc is None:
        return None
    chain = inc["chain"]
    return {
        "node_id": inc["node_id"],
        "change": chain[-1]["change"] if chain else "baseline",
        "gain": inc["gain_vs_baseline"]["mean"] or 0.0,
    }


def _report(args: argparse.Namespace) -> int:
    if args.html:
        from orchestrator import serve

        print(serve.write_html(api.open_campaign(args.campaign_dir), args.html))
        return 0
    if args.json:
        print(json.dumps(api.summary(args.campaign_dir), indent=2, default=str))
    else:
        print(api.report(args.campaign_dir, args.out))
    if args.tsv is not None:
        rows = api.export_log(args.campaign_dir, args.tsv)
        print(f"wrote {rows} decided nodes to {args.tsv}", file=sys.stderr)
    return 0


def _import_log(args: argparse.Namespace) -> int:
    added, known = api.import_log(args.log, args.campaign_dir, args.config)
    counts = {s: sum(1 for r in added if r["status"] == s) for s in ("keep", "discard", "crash")}
    print(f"imported {len(added)} rows from {args.log} ({', '.join(f'{n} {s}' for s, n in counts.items())})"
          + (f"; {known} were imported before" if known else ""))
    print("a running campaign remembers them at its next expansion; otherwise when it starts or resumes.",
          file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from orchestrator import serve

    return serve.serve(api.open_campaign(args.campaign_dir), args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
