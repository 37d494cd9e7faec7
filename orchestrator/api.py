"""arborist's Python API: what the CLI does, as functions (`import arborist`).

    summary = arborist.run("configs/quickstart.yaml", campaign_dir="runs/q1")
    tables = arborist.read("runs/q1")            # the ledger as Arrow tables
    trials = tables.trials.to_pandas()

`run` and `resume` start (or join) Ray and drive the campaign to its end in this process;
`status`, `report`, `read`, `import_log` and `export_log` only read the campaign folder (import_log
adds to it) and work while a campaign runs. Errors a user can cause raise ConfigError,
LedgerError, HistoryError or ApiError, each saying what was wrong and what to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import history, reader
from orchestrator import report as notebook
from orchestrator.config import CampaignConfig, ConfigError, load_config
from orchestrator.reader import LedgerTables
from orchestrator.tree import ROOT_ID, NodeStatus, SearchTree

__all__ = [
    "ApiError", "LedgerTables", "Summary", "export_log", "import_log", "read", "report", "resume", "run",
    "status", "summary",
]

Say = Callable[[str], None]  # where a run's notes go (the CLI prints them to stderr)


class ApiError(RuntimeError):
    """Ray would not start, or a campaign folder cannot be used as asked; the message says why."""


@dataclass(frozen=True)
class Summary:
    """How a campaign ended: the report's summary (notebook.summary()) and where the notebook is."""

    campaign_dir: Path
    report: Path  # the notebook
    data: dict[str, Any]
    baseline_failed: bool = False  # the baseline never ran cleanly: nothing could be compared

    @property
    def phase(self) -> str:
        return str(self.data["phase"])

    @property
    def incumbent(self) -> dict[str, Any] | None:
        inc: dict[str, Any] | None = self.data["incumbent"]
        return inc

    @property
    def decisions(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.data["decisions"]
        return rows

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


def campaign_config(config: str | Path | CampaignConfig, campaign_dir: str | Path | None = None) -> CampaignConfig:
    """A config (a YAML path or a CampaignConfig), placed in `campaign_dir` when given."""
    loaded = config if isinstance(config, CampaignConfig) else load_config(Path(config))
    if campaign_dir is None:
        if loaded.campaign_dir is None:
            raise ConfigError("the config names no campaign_dir; pass campaign_dir (--campaign-dir) for the campaign")
        return loaded
    resolved = Path(campaign_dir).resolve()
    scratch = loaded.ray.scratch_dir
    default_scratch = loaded.campaign_dir is None or scratch == Path(loaded.campaign_dir) / "scratch"
    ray = loaded.ray.model_copy(update={"scratch_dir": resolved / "scratch"}) if default_scratch else loaded.ray
    return loaded.model_copy(update={"campaign_dir": resolved, "ray": ray})


def open_campaign(campaign_dir: str | Path) -> CampaignConfig:
    """The config of the campaign in `campaign_dir` (its campaign.json)."""
    from orchestrator import campaign

    return campaign.load_campaign_config(Path(campaign_dir).resolve())


def start_ray(config: CampaignConfig) -> None:
    """Start or join the Ray the config names; ApiError says why it would not."""
    from cluster.runtime import RayStartError, connect

    try:
        connect(config.ray.address)
    except RayStartError as exc:
        raise ApiError(str(exc)) from exc


@contextlib.contextmanager
def new_campaign(
    config: CampaignConfig, config_path: Path | None, say: Say = lambda _: None
) -> Iterator[dict[str, Any]]:
    """Own the campaign folder and prepare it (snapshot, bundle, protected hashes); yields the setup."""
    from orchestrator import campaign, ownership

    assert config.campaign_dir is not None
    with ownership.claim(Path(config.campaign_dir), "arborist run"):
        removed = campaign.clear_failed_start(config)
        if removed:
            say(f"{config.campaign_dir} held a start that failed before its first event (nothing ran): "
                f"removed {', '.join(removed)} and starting fresh")
        setup = campaign.prepare(config, config_path)
        say(f"campaign {config.name} in {config.campaign_dir}")
        yield setup


@contextlib.contextmanager
def resumed_campaign(campaign_dir: Path, say: Say = lambda _: None) -> Iterator[tuple[CampaignConfig, Any]]:
    """Own a stopped campaign's folder; yields its config and the setup of a start that failed
    before its first event (None when it ran), or the finished tree when there is nothing to resume."""
    from orchestrator import campaign, ownership

    config = open_campaign(campaign_dir)  # a folder that is no campaign gets no lock file
    with ownership.claim(campaign_dir.resolve(), "arborist resume"):
        tree = reader.load_tree(config)
        if tree.last_seq == 0:
            setup, how = campaign.finish_start(config)
            say(f"{campaign_dir} held a start that failed before its first event; {how}")
            yield config, setup
            return
        if tree.phase.value == "done":
            say(f"campaign {config.name} already finished ({tree.finished_reason}).")
            yield config, tree
            return
        say(f"resuming campaign {config.name} from {len(tree.finished_trials())} finished trials")
        for line in campaign.check_inputs(config):  # before Ray: a missing input is named at once
            say(line)
        yield config, None


def run(
    config: str | Path | CampaignConfig,
    campaign_dir: str | Path | None = None,
    *,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    say: Say = lambda _: None,
) -> Summary:
    """Start a campaign from a config (a YAML path or a CampaignConfig) and run it to its end;
    returns its summary and writes its notebook. `campaign_dir` overrides the config's."""
    from orchestrator import campaign

    path = None if isinstance(config, CampaignConfig) else Path(config)
    resolved = campaign_config(config, campaign_dir)
    start_ray(resolved)  # before the folder is made: a Ray that will not start leaves nothing behind
    with new_campaign(resolved, path, say) as setup:
        campaign.run(resolved, setup=setup, on_progress=on_progress)
        return finished(resolved)


def resume(
    campaign_dir: str | Path,
    *,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    say: Say = lambda _: None,
) -> Summary:
    """Continue a stopped or crashed campaign to its end; a finished one is only summarized."""
    from orchestrator import campaign

    with resumed_campaign(Path(campaign_dir), say) as (config, setup):
        if isinstance(setup, SearchTree):
            return finished(config, setup)
        start_ray(config)
        campaign.run(config, setup=setup, on_progress=on_progress)
        return finished(config)


def finished(config: CampaignConfig, tree: SearchTree | None = None) -> Summary:
    """The summary of a campaign that ran, with its notebook written."""
    assert config.campaign_dir is not None
    tree = tree if tree is not None else reader.load_tree(config)
    path = notebook.write_notebook(config, tree)
    failed = ROOT_ID in tree.nodes and tree.root.status is NodeStatus.FAILED
    return Summary(Path(config.campaign_dir), path, notebook.summary(config, tree), failed)


def status(campaign_dir: str | Path) -> dict[str, Any]:
    """A campaign's progress, running or not: phase, counts, incumbent, budget spent, suspects."""
    config = open_campaign(campaign_dir)
    tree = reader.load_tree(config)
    data = notebook.summary(config, tree)
    return {
        **{k: data[k] for k in ("campaign", "phase", "finished_reason", "counts", "incumbent")},
        "running": tree.trials_running(), "trials_spent": tree.trials_spent(),
        "max_trials": config.budget.max_trials, "integration_spent": tree.trials_spent(integration=True),
        "integration_max": config.integration.max_trials, "elapsed_s": tree.elapsed_s(),
        "max_wall_s": config.budget.max_wall_s, "llm_calls": tree.llm_calls, "llm_usd": tree.llm_usd,
        "suspects": [n.node_id for n in tree.suspect_nodes()],
    }


def report(campaign_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the campaign's lab notebook (default CAMPAIGN_DIR/report.md); returns its path."""
    config = open_campaign(campaign_dir)
    return notebook.write_notebook(config, reader.load_tree(config), Path(out) if out is not None else None)


def summary(campaign_dir: str | Path) -> dict[str, Any]:
    """The report's data (what `arborist report --json` prints)."""
    config = open_campaign(campaign_dir)
    return notebook.summary(config, reader.load_tree(config))


def read(campaign_dir: str | Path) -> LedgerTables:
    """The campaign's ledger as Arrow tables (events, trials, proposals, llm_calls, nodes);
    `.to_pandas()` on one, or on the whole, gives DataFrames. docs/ledger.md has the columns."""
    return reader.read(open_campaign(campaign_dir))


def export_log(campaign_dir: str | Path, path: str | Path) -> int:
    """Write the campaign's decided nodes as an autoresearch-style results.tsv; returns the rows."""
    config = open_campaign(campaign_dir)
    return history.write_log(config, reader.load_tree(config), Path(path))


def import_log(
    log: str | Path, campaign_dir: str | Path, config: str | Path | CampaignConfig | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Bring an autoresearch-style results.tsv into a campaign's memory as already-tried history
    (orchestrator/history.py); returns the rows added and how many were there already.

    A campaign folder that holds no campaign yet needs `config` (the one `arborist run` will
    start there): the rows wait in the folder and are journaled when the campaign starts.
    """
    folder = Path(campaign_dir).resolve()
    from orchestrator.campaign import CAMPAIGN_FILE

    if (folder / CAMPAIGN_FILE).exists():
        resolved = open_campaign(folder)
    elif config is not None:
        resolved = campaign_config(config, folder)
    else:
        raise ApiError(f"{folder} holds no campaign yet; pass the config it will run (--config CFG) so the log's "
                       "objective column can be checked, then start it there with `arborist run CFG "
                       f"--campaign-dir {folder}`")
    rows = history.parse_log(Path(log), resolved.objective)
    return history.stage(folder, rows)
