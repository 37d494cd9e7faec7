"""Storage a user can get wrong: URIs, buckets, credentials; and an S3 outage mid-campaign."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from orchestrator import report
from orchestrator.campaign import prepare
from orchestrator.config import S3Config, load_config
from orchestrator.ledger import Ledger, LedgerError, load_events, open_filesystem, read_table
from orchestrator.search import FINISHED, SearchService
from orchestrator.storage import StorageError, open_storage, split_uri
from tests.s3_server import ACCESS_KEY, SECRET_KEY, SeaweedS3
from tests.toy import NO_WALL_LIMIT_S, write_config
from trials.runner import run_trial
from trials.spec import TrialSpec

_names = itertools.count()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3:/bucket/prefix", "malformed URI; write s3://bucket/prefix"),
        ("s4://bucket/prefix", "unknown scheme 's4'"),
        ("s3://Bad_Bucket/x", "not a valid bucket name"),
        ("s3:///x", "not a valid bucket name"),
    ],
)
def test_storage_uri_typos_are_named(uri: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        split_uri(uri)


def test_a_missing_bucket_is_named_and_can_be_created(s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    bucket = f"missing-{next(_names)}-{int(time.time())}"
    settings = S3Config(endpoint_url=s3_server.endpoint)
    with pytest.raises(StorageError, match=rf"bucket '{bucket}' does not exist at .*create_bucket: true"):
        open_storage(f"s3://{bucket}/c", settings)
    _, root = open_storage(f"s3://{bucket}/c", settings.model_copy(update={"create_bucket": True}))
    assert root == f"{bucket}/c"


def test_wrong_credentials_are_refused_clearly(s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-a-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
    with pytest.raises(StorageError, match=r"refused the credentials .* check AWS_ACCESS_KEY_ID"):
        open_storage(f"s3://{s3_server.bucket}/c", S3Config(endpoint_url=s3_server.endpoint))
    monkeypatch.delenv("ARBORIST_NO_SUCH_VAR", raising=False)
    with pytest.raises(StorageError, match="ARBORIST_NO_SUCH_VAR are not set"):
        open_storage(f"s3://{s3_server.bucket}/c", S3Config(endpoint_url=s3_server.endpoint,
                                                           access_key_env="ARBORIST_NO_SUCH_VAR"))


def test_an_unreachable_endpoint_is_named() -> None:
    with pytest.raises(StorageError, match=r"cannot reach http://127\.0\.0\.1:9"):
        open_storage("s3://bucket/c", S3Config(endpoint_url="http://127.0.0.1:9", access_key_env="PATH",
                                               secret_key_env="PATH"))


@pytest.mark.long
def test_a_30_second_outage_mid_campaign_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 server goes away for 30 s while trials keep finishing; then comes back."""
    with SeaweedS3(tmp_path / "s3") as server:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        config = load_config(write_config(
            tmp_path, storage=f"s3://{server.bucket}/outage", s3={"endpoint_url": server.endpoint},
            search={"proposers": [{"type": "grid"}]}, budget={"max_trials": 40, "max_wall_s": NO_WALL_LIMIT_S},
        ))
        service = SearchService(config.model_dump(mode="json"), prepare(config, None))
        service.ledger._flush_rows = 4  # flush often, so the outage hits flushes
        ran, during, down_since, outage_done = 0, 0, 0.0, False
        while True:
            if ran == 12 and not down_since:
                server.stop()
                down_since = time.monotonic()
            if down_since and not outage_done and time.monotonic() - down_since >= 30:
                server.start()
                outage_done = True
            dispatch = service.suggest()
            if dispatch == FINISHED:
                break
            if dispatch is None:
                time.sleep(0.1)
                continue
            assert isinstance(dispatch, dict)
            result = run_trial(TrialSpec.from_dict(dispatch["spec"]), service.bundle_bytes)
            assert service.complete(dispatch["spec"]["trial_id"], dispatch["token"], result.to_dict())
            ran += 1
            if down_since and not outage_done:
                during += 1
                time.sleep(0.5)  # trials keep finishing through the outage
        if not outage_done:  # finished while storage was down: it comes back before the close
            time.sleep(max(0.0, 30 - (time.monotonic() - down_since)))
            server.start()
        assert during >= 5, "too few trials finished during the outage to test anything"
        service.close()
        fs, root = open_filesystem(config.storage or "", config.s3)
        events = load_events(fs, root, None)  # Parquet alone: the journal must have been written out
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        finished = [e.data["result"]["trial_id"] for e in events if e.type == "trial_finished"]
        assert len(finished) == len(set(finished)) == ran
        assert read_table(fs, root, "trials").num_rows == ran
        notes = [e.data["message"] for e in events if e.type == "note"]
        assert any("is not answering" in n and "events are safe in" in n for n in notes)
        assert any("answering again" in n for n in notes)
        assert report.load_tree(config).phase.value == "done"


def test_storage_down_at_the_end_keeps_events_for_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SeaweedS3(tmp_path / "s3") as server:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        uri, settings = f"s3://{server.bucket}/end", S3Config(endpoint_url=server.endpoint)
        ledger = Ledger(uri, tmp_path / "journal.wal", s3=settings)
        from tests.orchestrator.test_ledger import _events

        for event in _events(1, 6):
            ledger.append(event)
        server.stop()
        with pytest.raises(LedgerError, match=r"still not answering; 6 events are safe in .*arborist resume"):
            ledger.close(wait_s=3)
        server.start()
        again = Ledger(uri, tmp_path / "journal.wal", s3=settings)
        again.close()
        fs, root = open_filesystem(uri, settings)
        assert [e.seq for e in load_events(fs, root, None)] == list(range(1, 7))
