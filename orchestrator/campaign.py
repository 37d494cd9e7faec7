"""A campaign on Ray: prepare the campaign folder, run the search and integration through the
tree actor and Ray Tune, and leave a ledger and a report behind.

Layout of a campaign folder:

    .owner.lock       held by the one `arborist run` or `resume` that owns the folder (ownership.py)
    campaign.json     the resolved config (what `arborist resume` reads back); written first
    config.yaml       the config file as given
    inputs/           a copy of each queue proposer's hypotheses file, diff files written in: what a
                      resume reads once the file is gone (orchestrator/proposers/queue.py)
    repo/             the campaign repository: a commit and branch per node
    bundles/          the snapshot as a git bundle, shipped to workers
    setup.json        snapshot commit, bundle and protected hashes; written last, so it marks
                      a folder whose preparation completed
    journal.wal       write-ahead journal of events not yet in Parquet
    ledger/           the Parquet ledger (unless `storage:` points elsewhere)
    scratch/          worktrees and trial outputs of this machine
    tune/             Ray Tune's records of each session
    inbox.yaml        changes queued by `arborist inject`
    report.md         the lab notebook
    control_chart.svg the controls in dispatch order, which the notebook shows

A folder without events is a start that failed before its first event (Ray or the tree actor
did not come up, the driver was killed while snapshotting): nothing ran in it, so `arborist
resume` finishes the start and `arborist run` may replace it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.config import CampaignConfig, ConfigError
from orchestrator.inbox import INBOX_FILE
from orchestrator.inbox import LOCK_FILE as INBOX_LOCK_FILE
from orchestrator.ownership import LOCK_FILE, check_free
from orchestrator.proposers.queue import INPUTS_DIR, copy_path, copy_text, load_queue, write_copy
from orchestrator.proposers.registry import proposer_names
from orchestrator.reader import JOURNAL_FILE, LEDGER_DIR, load_events
from trials.hashing import hash_path
from trials.protect import expected_digests, is_definition
from trials.worktree import CampaignRepo, snapshot_project

CAMPAIGN_FILE = "campaign.json"
SETUP_FILE = "setup.json"


def _staged(name: str) -> str:
    """Where a file is written before it is renamed into place (see _write_atomic)."""
    return f".{name}.tmp"


# What a start that failed before its first event can leave in the folder (see the layout above).
FAILED_START_LEFTOVERS = (
    CAMPAIGN_FILE, "config.yaml", INPUTS_DIR, "repo", "bundles", SETUP_FILE, JOURNAL_FILE, LEDGER_DIR, "scratch",
    "tune", INBOX_FILE, INBOX_LOCK_FILE, "report.md", "control_chart.svg", _staged(CAMPAIGN_FILE), _staged(SETUP_FILE),
)


class CampaignInterrupted(RuntimeError):
    """The campaign stopped before it finished; `arborist resume` continues it."""


def has_events(config: CampaignConfig) -> bool:
    return bool(load_events(config))


def _holds_a_campaign(campaign_dir: Path) -> str:
    """Why `run` refuses a folder that holds a campaign, and the three ways on."""
    return (
        f"{campaign_dir} already holds a campaign. Continue it with `arborist resume {campaign_dir}`, "
        f"or start afresh there after removing it (`rm -r {campaign_dir}`: its trials and report go with it), "
        "or choose another campaign_dir (or --campaign-dir) for a new one."
    )


def prepare(config: CampaignConfig, config_path: Path | None) -> dict[str, Any]:
    """Prepare the campaign folder: snapshot, bundle, protected hashes. The project is only read.

    The caller owns the folder (ownership.claim). A half-built folder (campaign.json but no
    setup.json) is prepared again from scratch; a prepared or started one is refused.
    """
    assert config.campaign_dir is not None
    campaign_dir = Path(config.campaign_dir)
    if (campaign_dir / SETUP_FILE).exists() or has_events(config):
        raise ConfigError(_holds_a_campaign(campaign_dir))
    queues = {name: (path, load_queue(path)) for name, path in queue_files(config)}  # a broken one stops us here
    campaign_dir.mkdir(parents=True, exist_ok=True)
    # First, so that a start that dies from here on leaves a folder `arborist resume` can finish.
    inputs = {name: {"path": str(path), "copy": str(copy_path(campaign_dir, name).relative_to(campaign_dir))}
              for name, (path, _) in queues.items()}
    _write_atomic(campaign_dir / CAMPAIGN_FILE, {"config": config.model_dump(mode="json"), "inputs": inputs})
    if config_path is not None:
        shutil.copyfile(config_path, campaign_dir / "config.yaml")
    for name, (path, items) in queues.items():
        write_copy(copy_path(campaign_dir, name), copy_text(path, items))
    for name in ("repo", "bundles"):
        shutil.rmtree(campaign_dir / name, ignore_errors=True)  # left by a start that died here
    repo_dir = campaign_dir / "repo"
    commit = snapshot_project(Path(config.project), repo_dir)
    repo = CampaignRepo(repo_dir)
    bundle_path = campaign_dir / "bundles" / "snapshot.bundle"
    bundle_path.parent.mkdir(exist_ok=True)
    bundle_id = repo.bundle(bundle_path)
    paths = [entry for entry in config.protected if not is_definition(entry)]
    definitions = [entry for entry in config.protected if is_definition(entry)]
    protected = {**repo.protected_hashes(commit, paths), **expected_digests(repo, commit, definitions)}
    missing = [p for p, h in protected.items() if h is None]
    if missing:
        raise ConfigError(
            f"protected: {', '.join(missing)} not found in the project {config.project}; "
            "list paths relative to the project root"
        )
    for path in config.data.heldout.values():
        protected[str(path)] = hash_path(Path(path))
    setup = {
        "snapshot_commit": commit,
        "bundle_id": bundle_id,
        "bundle_path": str(bundle_path),
        "protected": protected,
        "config_path": str(config_path) if config_path else "",
    }
    _write_atomic(campaign_dir / SETUP_FILE, setup)  # last: its presence means the preparation completed
    return setup


def queue_files(config: CampaignConfig) -> list[tuple[str, Path]]:
    """Each queue proposer's name and hypotheses file."""
    return [(name, Path(spec.path)) for name, spec in proposer_names(config)
            if spec.type == "queue" and spec.path is not None]


def check_inputs(config: CampaignConfig) -> list[str]:
    """Before a resume: what it reads from outside the campaign folder is there, or has a copy.

    Returns a line for each file that is gone and will be read from its copy; raises
    ConfigError naming a file that is gone with no copy, and saying what to do.
    """
    assert config.campaign_dir is not None
    campaign_dir = Path(config.campaign_dir)
    fallbacks = []
    for name, path in queue_files(config):
        if path.exists():
            continue
        copy = copy_path(campaign_dir, name)
        if not copy.is_file():
            raise ConfigError(
                f"proposer {name}: its hypotheses file {path} is gone, and {campaign_dir} holds no copy of it "
                f"({copy}; campaigns started before copies were kept have none). Put the file back at {path} "
                f"(a file holding `[]` if no item is left to propose), then run `arborist resume {campaign_dir}` "
                "again; nothing was changed."
            )
        fallbacks.append(f"proposer {name}: its hypotheses file {path} is gone; reading the campaign's copy {copy}, "
                         "which holds the file as it was last read")
    for var, held in config.data.heldout.items():
        if not Path(held).exists():
            raise ConfigError(
                f"data.heldout.{var}: {held} is gone. The evaluate step of every trial reads it there, and its hash "
                f"was taken when the campaign started: put it back unchanged, then run `arborist resume "
                f"{campaign_dir}` again; nothing was changed."
            )
    return fallbacks


def clear_failed_start(config: CampaignConfig) -> list[str]:
    """Make the folder ready for a fresh `arborist run`; return what a failed start had left there.

    Refuses a folder that holds events (a campaign `arborist resume` continues). Only the
    campaign layout's own entries are removed: anything else in the folder is the user's.
    """
    assert config.campaign_dir is not None
    campaign_dir = Path(config.campaign_dir)
    if has_events(config):
        raise ConfigError(_holds_a_campaign(campaign_dir))
    removed = []
    for name in FAILED_START_LEFTOVERS:
        path = campaign_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def finish_start(config: CampaignConfig) -> tuple[dict[str, Any], str]:
    """The setup a folder without events starts from, and how it was obtained, in words.

    A prepared folder (setup.json) starts from its own snapshot; a half-built one is prepared
    again from its campaign.json, so it snapshots the project as it is now.
    """
    assert config.campaign_dir is not None
    setup_path = Path(config.campaign_dir) / SETUP_FILE
    if setup_path.is_file():
        setup: dict[str, Any] = json.loads(setup_path.read_text())
        return setup, "it was prepared but never started: starting it from its snapshot"
    if not Path(config.project).is_dir():
        raise ConfigError(
            f"{config.campaign_dir} died while being prepared (nothing ran), and its project {config.project} is "
            f"gone, so it cannot be prepared again. Put the project back at {config.project}, or start afresh with "
            f"`arborist run CONFIG --campaign-dir {config.campaign_dir}`, which replaces the folder."
        )
    return prepare(config, None), (
        "it died while being prepared: prepared it again (snapshot, bundle, hashes) from its campaign.json"
    )


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that a reader, or a start killed midway, sees the old file or the whole new one."""
    tmp = path.with_name(_staged(path.name))
    with open(tmp, "w") as out:
        out.write(json.dumps(data, indent=2) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def load_campaign_config(campaign_dir: Path) -> CampaignConfig:
    path = campaign_dir / CAMPAIGN_FILE
    if not path.is_file():
        if (campaign_dir / LOCK_FILE).exists():
            check_free(campaign_dir)  # a `run` that has only just made the folder is not a failed start
            raise ConfigError(
                f"{campaign_dir} is not a campaign folder (no {CAMPAIGN_FILE}): it holds a start that failed "
                "before it wrote its config, and nothing ran. Start it again with "
                f"`arborist run CONFIG --campaign-dir {campaign_dir}`, which replaces it."
            )
        raise ConfigError(
            f"{campaign_dir} is not a campaign folder (no {CAMPAIGN_FILE}). "
            "Pass the folder `arborist run` printed, e.g. runs/<name>."
        )
    return CampaignConfig.model_validate(json.loads(path.read_text())["config"])


def actor_name(config: CampaignConfig) -> str:
    return f"arborist-tree-{config.name}"


def run(
    config: CampaignConfig,
    *,
    setup: dict[str, Any] | None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    progress_every_s: float = 1.0,
) -> dict[str, Any]:
    """Run (or resume, with setup None) a prepared campaign to its end on Ray.

    Returns the final progress summary. Raises CampaignInterrupted when stopped early.
    """
    from cluster.actors import start_actor
    from cluster.drafts import RemoteDrafts
    from cluster.runtime import connect
    from cluster.tune import build_tuner, make_suggester
    from orchestrator.proposers.service import DraftService  # litellm: seconds to import, so only here
    from orchestrator.search import SearchService

    assert config.campaign_dir is not None
    connect(config.ray.address)
    name = actor_name(config)
    config_data = config.model_dump(mode="json")
    drafts, drafts_actor = None, None
    if any(p.uses_llm for p in config.search.proposers):
        drafts_name = f"{name}-proposer"
        # Holding the handle keeps the actor alive: Ray collects an actor nobody holds.
        drafts_actor = start_actor(DraftService, drafts_name, config_data, actor_env=llm_env(config))
        drafts = RemoteDrafts(drafts_name)
    tree_env = llm_env(config) if config.memory.embedding_model else None
    actor = start_actor(SearchService, name, config_data, setup, make_suggester, drafts, actor_env=tree_env)
    stop_polling = threading.Event()
    poller = None
    if on_progress is not None:
        poller = threading.Thread(
            target=_poll, args=(actor, on_progress, stop_polling, progress_every_s), daemon=True
        )
        poller.start()
    try:
        tuner = build_tuner(
            name,
            max_concurrent=config.ray.max_concurrent,
            cpus=config.ray.cpus_per_trial,
            gpus=config.ray.gpus_per_trial,
            storage_dir=Path(config.campaign_dir) / "tune",
            name=f"session-{_session_count(actor)}",
            bundle=_bundle(config, setup),
        )
        tuner.fit()
    except BaseException:
        stop_polling.set()
        # The error on its way is what the user must see: closing is best effort, and a tree actor
        # that is gone (or a Ray that is) must not replace it with an error of its own.
        with contextlib.suppress(Exception):
            _close(actor, name, drafts_actor is not None)
        raise
    stop_polling.set()
    if poller is not None:
        poller.join(timeout=5)
    summary = _close(actor, name, drafts_actor is not None)
    drafts_actor = None
    if on_progress is not None:
        on_progress(summary)
    if summary["phase"] != "done":
        raise CampaignInterrupted(f"campaign {config.name} stopped before it finished.")
    return summary


def _close(actor: Any, name: str, with_drafts: bool) -> dict[str, Any]:
    """Close the tree actor (its last flush) and stop the campaign's actors; the final summary."""
    import ray

    from cluster.actors import stop_actor

    summary: dict[str, Any] = ray.get(actor.close.remote())
    stop_actor(name)
    if with_drafts:
        stop_actor(f"{name}-proposer")
    return summary


def resume_hint(campaign_dir: Path) -> str:
    """How to continue a campaign that stopped, on this machine and as a Ray job: one line."""
    return (
        f"Continue with: arborist resume {campaign_dir} (as a Ray job: ray job submit --address "
        f"http://HEAD:8265 -- python -m orchestrator.cli resume {campaign_dir})"
    )


def _bundle(config: CampaignConfig, setup: dict[str, Any] | None) -> tuple[str, bytes] | None:
    """The campaign bundle's id and bytes, for the workers; None when the folder has no setup.json
    (its workers then fetch the bundle from the tree actor)."""
    assert config.campaign_dir is not None
    setup_path = Path(config.campaign_dir) / SETUP_FILE
    if setup is None and setup_path.is_file():
        setup = json.loads(setup_path.read_text())
    if setup is None:
        return None
    return setup["bundle_id"], Path(setup["bundle_path"]).read_bytes()


def llm_env(config: CampaignConfig) -> dict[str, str] | None:
    """The LLM key, for the actors that call the LLM (on a cluster their workers may lack it)."""
    name = config.llm.api_key_env if config.llm else None
    if name and name in os.environ:
        return {name: os.environ[name]}
    return None


def _session_count(actor: Any) -> int:
    import ray

    return int(ray.get(actor.progress.remote()).get("sessions", 1))


def _poll(actor: Any, on_progress: Callable[[dict[str, Any]], None], stop: threading.Event, every_s: float) -> None:
    import ray

    while not stop.wait(every_s):
        try:
            on_progress(ray.get(actor.progress.remote(), timeout=10))
        except Exception:
            continue
