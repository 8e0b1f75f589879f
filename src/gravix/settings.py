"""The one reader of the environment: flag > environment variable > default."""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from gravix.errors import ConfigError
from gravix.units import parse_duration, parse_size

DEFAULT_DATA_DIR = "./data"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
DEFAULT_URL = "http://127.0.0.1:8090"
DEFAULT_DASHBOARD_HOST = "127.0.0.1"
DEFAULT_DASHBOARD_PORT = 8091
DEFAULT_ROTATE_SECONDS = 60.0
DEFAULT_ROTATE_BYTES = 64 * 1024 * 1024
DEFAULT_RETENTION_DAYS = 30
DEFAULT_MAX_FUTURE_SECONDS = 300.0
DEFAULT_MAX_SINGLE_BYTES = 1024 * 1024
DEFAULT_MAX_BATCH_BYTES = 16 * 1024 * 1024
DEFAULT_MIN_FREE_BYTES = 256 * 1024 * 1024
DEFAULT_EXECUTOR = "local"
DASK_SCHEME = "dask://"
# How long a rollup's lease on a store lasts unless renewed (DESIGN §11): the holder renews
# it every third of this, so a killed runner's lease is taken over within this time.
DEFAULT_LEASE_SECONDS = 60.0
# A node id goes into object names (raw/…/<node-id>-<id>.jsonl): letters, digits, _ and -.
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
# S3 bucket names (the rules AWS states for new buckets, which every S3-compatible store takes).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# No "=" in a prefix: an engine reading Hive partitions would take "a=b" above a table for one.
_PREFIX_PART = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class StoreConfig:
    """Where raw/, warehouse/ and quarantine/ live when not under the data root: an S3
    bucket and prefix, with the credentials, region and endpoint of the standard AWS
    variables (None: the AWS SDK's own defaults)."""

    url: str
    bucket: str
    prefix: str  # "" or "a/b", without leading or trailing slashes
    region: str | None = None
    endpoint: str | None = None  # e.g. http://127.0.0.1:9000 for MinIO or moto
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    api_keys: tuple[str, ...] = ()
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    url: str = DEFAULT_URL
    rate_limit: float = 0.0
    rotate_seconds: float = DEFAULT_ROTATE_SECONDS
    rotate_bytes: int = DEFAULT_ROTATE_BYTES
    retention_days: int = DEFAULT_RETENTION_DAYS
    warehouse_retention_days: int = DEFAULT_RETENTION_DAYS
    max_future_seconds: float = DEFAULT_MAX_FUTURE_SECONDS
    max_single_bytes: int = DEFAULT_MAX_SINGLE_BYTES
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    dashboard_host: str = DEFAULT_DASHBOARD_HOST
    dashboard_port: int = DEFAULT_DASHBOARD_PORT
    executor: str = DEFAULT_EXECUTOR  # local, or dask://HOST:PORT (DESIGN §11)
    store: StoreConfig | None = None  # None: raw/, warehouse/, quarantine/ under data_dir
    node_id: str = "node"
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    # Test-only fault injection plan for the durable-file module (JSON); see durable.py.
    fault_plan: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:  # keys never appear in logs, even by accident
        keys = f"<{len(self.api_keys)} key(s)>"
        return (
            f"Settings(data_dir={str(self.data_dir)!r}, api_keys={keys}, host={self.host!r}, "
            f"port={self.port}, url={self.url!r}, store={self.store_url!r}, "
            f"node_id={self.node_id!r})"
        )

    @property
    def store_url(self) -> str:
        """The store as the user named it, or the data root."""
        return self.store.url if self.store is not None else str(self.data_dir)


class _Source:
    """Flags first, then the environment; every bad value is reported under the name the
    user gave it (the flag, or the environment variable)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def pick(self, flag: object, flag_name: str, var: str | None) -> tuple[object, str]:
        if flag is not None:
            return flag, flag_name
        value = self.env.get(var) if var else None
        return (value, f"environment variable {var}") if value not in (None, "") else (None, "")

    def number(
        self, flag: object, flag_name: str, var: str | None, default: float, minimum: float = 0
    ) -> float:
        value, name = self.pick(flag, flag_name, var)
        if value is None:
            return default
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
        if not math.isfinite(number):  # "nan" < minimum is False, so NaN would slip through
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if number < minimum:
            raise ConfigError(f"{name} must be ≥ {minimum:g}, got {value!r}")
        return number

    def whole(
        self, flag: object, flag_name: str, var: str | None, default: int, minimum: int = 0
    ) -> int:
        number = self.number(flag, flag_name, var, default, minimum)
        if number != int(number):
            name = self.pick(flag, flag_name, var)[1]
            raise ConfigError(f"{name} must be a whole number, got {number:g}")
        return int(number)

    def seconds(
        self, flag: object, flag_name: str, var: str | None, default: float, minimum: float = 0
    ) -> float:
        value, name = self.pick(flag, flag_name, var)
        if value is None:
            return default
        seconds = parse_duration(value, name)  # type: ignore[arg-type]
        if seconds < minimum:
            raise ConfigError(f"{name} must be at least {minimum:g} s, got {value!r}")
        return seconds

    def size(self, flag: object, flag_name: str, var: str | None, default: int) -> int:
        value, name = self.pick(flag, flag_name, var)
        return default if value is None else parse_size(value, name)  # type: ignore[arg-type]

    def text(self, flag: object, var: str, default: str) -> str:
        return str(self.pick(flag, "", var)[0] or default)

    def keys(
        self, flag: list[str] | tuple[str, ...] | None, file_flag: str | Path | None = None
    ) -> tuple[str, ...]:
        """Keys from the flags (--api-key, --api-key-file) if any is given, else from the
        environment (API_KEY, GRAVIX_API_KEYS, GRAVIX_API_KEY_FILE)."""
        keys: list[str] = list(flag or [])
        if file_flag is not None:
            keys.extend(_key_file(Path(file_flag), "--api-key-file"))
        elif not keys:
            if self.env.get("API_KEY"):
                keys.append(self.env["API_KEY"])
            keys.extend(k.strip() for k in self.env.get("GRAVIX_API_KEYS", "").split(",") if k)
            if self.env.get("GRAVIX_API_KEY_FILE"):
                name = "environment variable GRAVIX_API_KEY_FILE"
                keys.extend(_key_file(Path(self.env["GRAVIX_API_KEY_FILE"]), name))
        keys = [k for k in dict.fromkeys(keys) if k]
        if any(any(c.isspace() for c in k) for k in keys) or (flag and not all(flag)):
            raise ConfigError("an API key is empty or contains whitespace")
        return tuple(keys)


def _key_file(path: Path, name: str) -> list[str]:
    """The keys of an API key file: one a line; blank lines and ``#`` comments ignored."""
    hint = "one key per line; blank lines and lines starting with # are ignored"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the API key file {path} (from {name}): {exc.strerror}",
            hint="check the path and that this user may read it",
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"the API key file {path} (from {name}) is not UTF-8 text", hint=hint
        ) from None
    keys = [line.strip() for line in text.splitlines()]
    keys = [k for k in keys if k and not k.startswith("#")]
    if not keys:
        raise ConfigError(f"the API key file {path} (from {name}) holds no key", hint=hint)
    return keys


def _directory(picked: tuple[object, str], default: str) -> Path:
    """The data root; one that names a file is refused here, in the terms of its source."""
    value, source = picked
    path = Path(str(value)) if value not in (None, "") else Path(default)
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"{source or '--data-dir'} {path} is not a directory",
            hint="the data root is the directory that holds buffer/, raw/, warehouse/ and "
            "state/; pass --data-dir DIR or set GRAVIX_DATA_DIR",
        )
    return path


def _executor(picked: tuple[object, str]) -> str:
    """``local`` or ``dask://HOST:PORT``, checked here so that a typo is a usage error
    before any work starts."""
    value, source = picked
    text = str(value).strip() if value not in (None, "") else DEFAULT_EXECUTOR
    if text == DEFAULT_EXECUTOR:
        return text
    host, _, port = text.removeprefix(DASK_SCHEME).rpartition(":")
    if (
        not text.startswith(DASK_SCHEME)
        or not host
        or any(c in host for c in "/@ ")
        or not (port.isascii() and port.isdecimal() and 0 < int(port) <= 65535)
    ):
        raise ConfigError(
            f"{source or '--executor'} must be local or dask://HOST:PORT, got {text!r}",
            hint="e.g. --executor dask://127.0.0.1:8786 (a running Dask scheduler)",
        )
    return text


def _store_config(picked: tuple[object, str], env: Mapping[str, str]) -> StoreConfig | None:
    value, source = picked
    if value in (None, ""):
        return None
    url = str(value)
    hint = (
        "give --store s3://BUCKET/PREFIX (or set GRAVIX_STORE); credentials, region and "
        "endpoint come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, "
        "AWS_ENDPOINT_URL; without --store everything stays under the data root"
    )
    parts = urlsplit(url)
    if parts.scheme != "s3" or parts.query or parts.fragment:
        raise ConfigError(f"{source} {url!r} is not an s3:// URL", hint=hint)
    if not _BUCKET.match(parts.netloc or "") or ".." in parts.netloc:
        raise ConfigError(f"{source} {url!r}: {parts.netloc!r} is not a bucket name", hint=hint)
    prefix = parts.path.strip("/")
    parts_ok = all(_PREFIX_PART.match(p) and p not in (".", "..") for p in prefix.split("/"))
    if prefix and not parts_ok:
        raise ConfigError(
            f"{source} {url!r}: the prefix {prefix!r} may hold only letters, digits and "
            "_ . - between slashes",
            hint=hint,
        )
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
        raise ConfigError(
            f"AWS_ENDPOINT_URL {endpoint!r} must start with http:// or https://", hint=hint
        )
    return StoreConfig(
        url=f"s3://{parts.netloc}/{prefix}".rstrip("/"),
        bucket=parts.netloc,
        prefix=prefix,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        endpoint=endpoint,
        access_key=env.get("AWS_ACCESS_KEY_ID") or None,
        secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        session_token=env.get("AWS_SESSION_TOKEN") or None,
    )


def _node_id(picked: tuple[object, str]) -> str:
    value, source = picked
    hint = "1–63 letters, digits, _ or -, starting with a letter or digit; e.g. --node-id ingest-1"
    if value in (None, ""):
        # The host name's first label: a fully qualified name's dots are not allowed.
        name = socket.gethostname().split(".")[0]
        if not NODE_ID.match(name):
            raise ConfigError(
                f"the host name {socket.gethostname()!r} cannot be a node id",
                hint=f"pass --node-id or set GRAVIX_NODE_ID ({hint})",
            )
        return name
    if not NODE_ID.match(str(value)):
        raise ConfigError(f"{source} {value!r} is not a valid node id", hint=hint)
    return str(value)


def _refuse_store(store: StoreConfig | None, command: str | None) -> None:
    """A command that does not work on an object store yet refuses one instead of quietly
    using the data root."""
    if store is not None and command is not None:
        raise ConfigError(
            f"{command} does not work on an object store yet (store {store.url})",
            hint="run it without --store and with GRAVIX_STORE unset, on a data root "
            "(--data-dir); every command but gravix demo takes an s3:// store",
        )


def load_settings(
    *,
    data_dir: str | Path | None = None,
    api_keys: list[str] | tuple[str, ...] | None = None,
    api_key_file: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
    url: str | None = None,
    rate_limit: float | None = None,
    rotate_seconds: float | str | None = None,
    rotate_bytes: str | int | None = None,
    retention_days: int | None = None,
    warehouse_retention_days: int | None = None,
    max_future_seconds: float | str | None = None,
    max_single_bytes: str | int | None = None,
    max_batch_bytes: str | int | None = None,
    min_free_bytes: str | int | None = None,
    dashboard_host: str | None = None,
    dashboard_port: int | None = None,
    executor: str | None = None,
    store: str | None = None,
    node_id: str | None = None,
    local_only: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from flags (None = not given), then the environment, then defaults.
    ``local_only`` names a command that cannot use an object store: an s3:// store (flag or
    environment) is then refused with ConfigError before anything is touched."""
    src = _Source(os.environ if environ is None else environ)
    store_config = _store_config(src.pick(store, "--store", "GRAVIX_STORE"), src.env)
    _refuse_store(store_config, local_only)
    port_value = src.whole(port, "--port", "GRAVIX_PORT", DEFAULT_PORT)
    if not 0 <= port_value <= 65535:
        raise ConfigError(f"--port must be 0–65535, got {port_value}")
    dashboard_port_value = src.whole(
        dashboard_port, "--port", "GRAVIX_DASHBOARD_PORT", DEFAULT_DASHBOARD_PORT
    )
    if not 0 <= dashboard_port_value <= 65535:
        raise ConfigError(f"the dashboard port must be 0–65535, got {dashboard_port_value}")
    days = src.whole(retention_days, "--days", "GRAVIX_RETENTION_DAYS", DEFAULT_RETENTION_DAYS, 1)
    return Settings(
        data_dir=_directory(src.pick(data_dir, "--data-dir", "GRAVIX_DATA_DIR"), DEFAULT_DATA_DIR),
        api_keys=src.keys(api_keys, api_key_file),
        host=src.text(host, "GRAVIX_HOST", DEFAULT_HOST),
        port=port_value,
        url=src.text(url, "GRAVIX_URL", DEFAULT_URL).rstrip("/"),
        rate_limit=src.number(rate_limit, "--rate-limit", "GRAVIX_RATE_LIMIT", 0.0),
        rotate_seconds=src.seconds(
            rotate_seconds,
            "--rotate-seconds",
            "GRAVIX_ROTATE_SECONDS",
            DEFAULT_ROTATE_SECONDS,
            0.01,
        ),
        rotate_bytes=src.size(
            rotate_bytes, "--rotate-bytes", "GRAVIX_ROTATE_BYTES", DEFAULT_ROTATE_BYTES
        ),
        retention_days=days,
        warehouse_retention_days=src.whole(
            warehouse_retention_days, "--warehouse-days", "GRAVIX_WAREHOUSE_RETENTION_DAYS", days, 1
        ),
        max_future_seconds=src.seconds(
            max_future_seconds,
            "--max-future-seconds",
            "GRAVIX_MAX_FUTURE_SECONDS",
            DEFAULT_MAX_FUTURE_SECONDS,
        ),
        max_single_bytes=src.size(
            max_single_bytes, "--max-single-bytes", None, DEFAULT_MAX_SINGLE_BYTES
        ),
        max_batch_bytes=src.size(
            max_batch_bytes, "--max-batch-bytes", None, DEFAULT_MAX_BATCH_BYTES
        ),
        min_free_bytes=src.size(
            min_free_bytes, "--min-free-bytes", "GRAVIX_MIN_FREE_BYTES", DEFAULT_MIN_FREE_BYTES
        ),
        dashboard_host=src.text(dashboard_host, "GRAVIX_DASHBOARD_HOST", DEFAULT_DASHBOARD_HOST),
        dashboard_port=dashboard_port_value,
        executor=_executor(src.pick(executor, "--executor", "GRAVIX_EXECUTOR")),
        store=store_config,
        node_id=_node_id(src.pick(node_id, "--node-id", "GRAVIX_NODE_ID")),
        lease_seconds=src.seconds(
            None, "--lease-seconds", "GRAVIX_LEASE_SECONDS", DEFAULT_LEASE_SECONDS, 1.0
        ),
        fault_plan=src.env.get("GRAVIX_FAULT_PLAN") or None,
    )
