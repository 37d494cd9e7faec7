"""Where the ledger lives: a local folder or `s3://bucket/prefix`, opened through pyarrow.fs.

S3 settings come from the config's `s3:` section or the standard AWS environment variables and
profiles. The bucket is checked with boto3 before anything is written, so a typo, a missing
bucket or wrong credentials stop the campaign at once with what to fix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from orchestrator.config import S3Config

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class StorageError(RuntimeError):
    """Storage cannot be used as configured; the message says what to fix."""


def split_uri(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket, prefix) of a storage URI; ("file", "", path) for a local path."""
    if "://" not in uri:
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:/", uri):
            raise StorageError(f"storage {uri!r}: malformed URI; write s3://bucket/prefix (two slashes)")
        return "file", "", uri
    scheme, rest = uri.split("://", 1)
    if scheme == "file":
        return "file", "", rest
    if scheme not in ("s3", "s3a"):
        raise StorageError(f"storage {uri!r}: unknown scheme {scheme!r}; use a local path or s3://bucket/prefix")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket):
        raise StorageError(
            f"storage {uri!r}: {bucket!r} is not a valid bucket name (3-63 lowercase letters, digits, '-', '.')"
        )
    return "s3", bucket, prefix.strip("/")


def open_storage(uri: str, s3: S3Config | None = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the ledger's root path in it."""
    scheme, bucket, prefix = split_uri(uri)
    if scheme == "file":
        return pafs.LocalFileSystem(), str(Path(prefix).resolve())
    settings = s3 or S3Config()
    credentials = _credentials(settings)
    region = settings.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    _check_bucket(bucket, endpoint, region, credentials, settings.create_bucket, uri)
    kwargs: dict[str, Any] = {"region": region, "connect_timeout": 5.0, "request_timeout": 30.0}
    if credentials is not None:
        kwargs.update(access_key=credentials[0], secret_key=credentials[1])
        if credentials[2]:
            kwargs["session_token"] = credentials[2]
    if endpoint:
        scheme_part, _, host = endpoint.partition("://")
        kwargs.update(endpoint_override=host or scheme_part, scheme=scheme_part if host else "https")
    try:
        fs = pafs.S3FileSystem(**kwargs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise StorageError(f"storage {uri!r}: cannot open it ({exc})") from exc
    return fs, f"{bucket}/{prefix}".rstrip("/")


def _credentials(settings: S3Config) -> tuple[str, str, str | None] | None:
    """Explicit keys from the named variables, else a profile, else whatever boto3 finds."""
    if settings.access_key_env or settings.secret_key_env:
        names = (settings.access_key_env or "AWS_ACCESS_KEY_ID", settings.secret_key_env or "AWS_SECRET_ACCESS_KEY")
        missing = [n for n in names if not os.environ.get(n)]
        if missing:
            raise StorageError(f"s3: the environment variable(s) {', '.join(missing)} are not set; export the keys")
        return os.environ[names[0]], os.environ[names[1]], None
    import boto3
    import botocore.exceptions

    try:
        session = boto3.Session(profile_name=settings.profile) if settings.profile else boto3.Session()
    except botocore.exceptions.ProfileNotFound as exc:
        raise StorageError(f"s3.profile {settings.profile!r} is not in your AWS config (~/.aws/config)") from exc
    found = session.get_credentials()
    if found is None:
        return None  # anonymous, or the instance's role through pyarrow's own chain
    frozen = found.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


def _check_bucket(
    bucket: str, endpoint: str | None, region: str, credentials: tuple[str, str, str | None] | None,
    create: bool, uri: str,
) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    kwargs: dict[str, Any] = {"region_name": region, "endpoint_url": endpoint,
                              "config": Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=20)}
    if credentials is not None:
        kwargs.update(aws_access_key_id=credentials[0], aws_secret_access_key=credentials[1],
                      aws_session_token=credentials[2])
    client = boto3.client("s3", **kwargs)
    where = endpoint or "AWS"
    try:
        client.head_bucket(Bucket=bucket)
        return
    except EndpointConnectionError as exc:
        raise StorageError(f"storage {uri!r}: cannot reach {where} ({exc}); check s3.endpoint_url") from exc
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            if not create:
                raise StorageError(
                    f"storage {uri!r}: bucket {bucket!r} does not exist at {where}; create it "
                    f"(aws s3 mb s3://{bucket}) or set s3.create_bucket: true"
                ) from exc
        elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"):
            raise StorageError(
                f"storage {uri!r}: {where} refused the credentials for bucket {bucket!r} ({code}); check "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, s3.profile or s3.access_key_env"
            ) from exc
        else:
            raise StorageError(f"storage {uri!r}: {where} answered {code}: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"storage {uri!r}: {exc}; check the s3: section and the AWS variables") from exc
    try:
        client.create_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(f"storage {uri!r}: could not create bucket {bucket!r}: {exc}") from exc
