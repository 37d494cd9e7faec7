"""Time `arborist export --mlflow` on a real toy campaign (tests/toy.py: real trials, no Ray).

    .venv/bin/python scripts/bench_export.py --trials 60 [--json FILE]

Runs the campaign, then exports it three times in this process: to a new sqlite store (creating
its tables), again to that store (nothing new: every run found and compared), and to a second new
store after its tables exist (the per-run write cost alone).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.campaign import prepare
from orchestrator.config import load_config
from orchestrator.export_mlflow import export
from orchestrator.search import SearchService
from tests.orchestrator.test_search import drive
from tests.toy import write_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=60, help="the campaign's trial budget")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = load_config(write_config(root, budget={"max_trials": args.trials}, integration={"enabled": False}))
        service = SearchService(config.model_dump(mode="json"), prepare(config, None))
        drive(service)
        service.close()
        campaign_dir = root / "campaign"
        figures = {}
        for label, store in (("first", "a.db"), ("again", "a.db"), ("tables_ready", "b.db")):
            uri = f"sqlite:///{root / store}"
            if label == "tables_ready":
                from mlflow.tracking import MlflowClient

                MlflowClient(uri).search_experiments()  # creates the tables outside the timing
            start = time.perf_counter()
            done = export(campaign_dir, uri)
            seconds = time.perf_counter() - start
            runs = done.trials_created + done.trials_updated + done.trials_unchanged
            figures[label] = {"seconds": round(seconds, 2), "trial_runs": runs,
                              "ms_per_trial": round(1000 * seconds / max(runs, 1), 1),
                              "created": done.trials_created, "nodes_created": done.nodes_created}
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
