"""The S3 backend of :mod:`gravix.storage.store`: any S3-compatible store (AWS S3, MinIO,
Ceph RGW, R2) through pyarrow's own S3 filesystem, with the endpoint, region and
credentials of :class:`gravix.settings.StoreConfig`.

One call is not pyarrow's: the conditional create (``PUT`` with ``If-None-Match: *``) that
leases need, which pyarrow's filesystem has no way to send. boto3 sends it
(``put_object(IfNoneMatch="*")``), and S3 answers 412 when the object exists.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from gravix.errors import StoreError
from gravix.settings import StoreConfig
from gravix.storage import layout
from gravix.storage.store import ObjectInfo

CONNECT_TIMEOUT_SECONDS = 5.0
# A request that makes no progress for this long fails (a slow but moving upload does not);
# it also bounds how long a process that stops waits for a request to a store that hangs.
REQUEST_TIMEOUT_SECONDS = 10.0
# pyarrow's own retries of one request; callers retry with their own back-off beyond that.
ATTEMPTS = 2


def _unreachable_hint(config: StoreConfig) -> str:
    where = config.endpoint or "AWS S3"
    return (
        f"check that {where} is reachable and that bucket {config.bucket} exists and "
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY may use it"
    )


class S3Store:
    """A bucket and prefix as a store (see :class:`gravix.storage.store.Store`)."""

    def __init__(self, config: StoreConfig) -> None:
        from pyarrow import fs

        self.url = config.url
        self.config = config
        self._base = f"{config.bucket}/{config.prefix}".rstrip("/")
        options: dict[str, Any] = {
            "access_key": config.access_key,
            "secret_key": config.secret_key,
            "session_token": config.session_token,
            "region": config.region,
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "request_timeout": REQUEST_TIMEOUT_SECONDS,
            "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=ATTEMPTS),
        }
        if config.endpoint:
            endpoint = urlsplit(config.endpoint)
            options["scheme"] = endpoint.scheme
            options["endpoint_override"] = endpoint.netloc
        self._fs = fs.S3FileSystem(**{k: v for k, v in options.items() if v is not None})
        self._client: Any = None

    def _path(self, key: str) -> str:
        return f"{self._base}/{layout.check_object_key(key)}"

    def object_url(self, key: str) -> str:
        """The ``s3://`` URL of object ``key``, as polars' and Spark's readers name it."""
        return f"s3://{self._path(key)}"

    def scan_options(self) -> dict[str, str]:
        """The ``storage_options`` with which polars' own S3 reader reaches this store: the
        endpoint, region and credentials that this store's requests use."""
        c = self.config
        given = {
            "aws_access_key_id": c.access_key,
            "aws_secret_access_key": c.secret_key,
            "aws_session_token": c.session_token,
            "aws_region": c.region,
            "aws_endpoint_url": c.endpoint,
        }
        options = {name: value for name, value in given.items() if value}
        if c.endpoint and urlsplit(c.endpoint).scheme == "http":
            options["aws_allow_http"] = "true"
        return options

    @contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StoreError(
                f"{self.url}: could not {action} {key}: {exc}".splitlines()[0][:400],
                hint=_unreachable_hint(self.config),
            ) from None

    def list(self, prefix: str) -> list[ObjectInfo]:
        from pyarrow import fs

        layout.check_key_prefix(prefix)
        start = len(self._base) + 1
        selector = fs.FileSelector(
            f"{self._base}/{prefix.rstrip('/')}", recursive=True, allow_not_found=True
        )
        with self._errors("list", prefix):
            infos = self._fs.get_file_info(selector)
        return sorted(
            ObjectInfo(info.path[start:], info.size, info.mtime_ns)
            for info in infos
            if info.type == fs.FileType.File and info.path[start:].startswith(prefix)
        )

    def subdirs(self, prefix: str) -> builtins.list[str]:
        """The names of the directories directly under ``prefix`` (one delimited LIST): a
        reader learns which partitions exist without listing every object in them."""
        from pyarrow import fs

        layout.check_key_prefix(prefix)
        selector = fs.FileSelector(f"{self._base}/{prefix.rstrip('/')}", allow_not_found=True)
        with self._errors("list", prefix):
            infos = self._fs.get_file_info(selector)
        return sorted(info.base_name for info in infos if info.type == fs.FileType.Directory)

    def stat(self, key: str) -> ObjectInfo | None:
        from pyarrow import fs

        with self._errors("look up", key):
            info = self._fs.get_file_info(self._path(key))
        return ObjectInfo(key, info.size, info.mtime_ns) if info.type == fs.FileType.File else None

    def read(self, key: str) -> bytes:
        # A random-access file knows its size and reads it in a few ranged GETs; a stream's
        # read() of the whole object measured 15x slower (many small reads).
        with self._errors("read", key), self._fs.open_input_file(self._path(key)) as f:
            return bytes(f.read())

    def write(self, key: str, data: bytes) -> None:
        # The object appears when the stream closes (one PUT or a completed multipart
        # upload): readers see the old object or the new one, never a part of it.
        with self._errors("write", key), self._fs.open_output_stream(self._path(key)) as f:
            f.write(data)

    def delete(self, key: str) -> None:
        try:
            with self._errors("delete", key):
                self._fs.delete_file(self._path(key))
        except FileNotFoundError:
            return

    def create(self, key: str, data: bytes) -> bool:
        import botocore.exceptions

        bucket, _, name = self._path(key).partition("/")
        try:
            self._boto().put_object(Bucket=bucket, Key=name, Body=data, IfNoneMatch="*")
        except botocore.exceptions.ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (409, 412):  # it exists (409: a concurrent create is under way)
                return False
            raise StoreError(
                f"{self.url}: could not create {key}: {exc}", hint=_unreachable_hint(self.config)
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise StoreError(
                f"{self.url}: could not create {key}: {exc}", hint=_unreachable_hint(self.config)
            ) from None
        return True

    def _boto(self) -> Any:
        if self._client is None:
            import boto3
            import botocore.config

            c = self.config
            session = boto3.session.Session(
                aws_access_key_id=c.access_key,
                aws_secret_access_key=c.secret_key,
                aws_session_token=c.session_token,
                region_name=c.region,
            )
            self._client = session.client(
                "s3",
                endpoint_url=c.endpoint,
                config=botocore.config.Config(
                    connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    read_timeout=REQUEST_TIMEOUT_SECONDS,
                    retries={"max_attempts": ATTEMPTS, "mode": "standard"},
                ),
            )
        return self._client
