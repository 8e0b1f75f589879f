"""Settings: flag > environment > default, and bad values refused with ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from gravix.errors import ConfigError
from gravix.settings import load_settings
from gravix.units import parse_size


def test_defaults_match_the_design_table_when_nothing_is_given() -> None:
    s = load_settings(environ={})
    assert s.data_dir == Path("./data")
    assert s.api_keys == ()
    assert (s.host, s.port) == ("127.0.0.1", 8090)
    assert s.url == "http://127.0.0.1:8090"
    assert s.rate_limit == 0
    assert (s.rotate_seconds, s.rotate_bytes) == (60, 64 * 1024 * 1024)
    assert (s.retention_days, s.warehouse_retention_days) == (30, 30)
    assert s.fault_plan is None


def test_environment_overrides_defaults() -> None:
    env = {
        "GRAVIX_DATA_DIR": "/srv/gravix",
        "GRAVIX_HOST": "0.0.0.0",
        "GRAVIX_PORT": "9000",
        "GRAVIX_URL": "http://example:9000/",
        "GRAVIX_RATE_LIMIT": "2.5",
        "GRAVIX_ROTATE_SECONDS": "5",
        "GRAVIX_ROTATE_BYTES": "1MiB",
        "GRAVIX_RETENTION_DAYS": "7",
        "GRAVIX_WAREHOUSE_RETENTION_DAYS": "90",
    }
    s = load_settings(environ=env)
    assert s.data_dir == Path("/srv/gravix")
    assert (s.host, s.port) == ("0.0.0.0", 9000)
    assert s.url == "http://example:9000"  # trailing slash dropped so paths join cleanly
    assert s.rate_limit == 2.5
    assert (s.rotate_seconds, s.rotate_bytes) == (5.0, 1_048_576)
    assert (s.retention_days, s.warehouse_retention_days) == (7, 90)


def test_flags_override_environment() -> None:
    env = {
        "GRAVIX_DATA_DIR": "/env",
        "GRAVIX_PORT": "9000",
        "GRAVIX_ROTATE_BYTES": "1MiB",
        "GRAVIX_RETENTION_DAYS": "7",
        "API_KEY": "env-key",
    }
    s = load_settings(
        data_dir="/flag",
        port=9100,
        rotate_bytes="2MiB",
        retention_days=3,
        api_keys=["flag-key"],
        environ=env,
    )
    assert s.data_dir == Path("/flag")
    assert s.port == 9100
    assert s.rotate_bytes == 2 * 1_048_576
    assert s.retention_days == 3
    assert s.api_keys == ("flag-key",)  # flag keys replace the environment's, not add to them


def test_empty_environment_values_count_as_unset() -> None:
    s = load_settings(environ={"GRAVIX_PORT": "", "GRAVIX_DATA_DIR": ""})
    assert s.port == 8090
    assert s.data_dir == Path("./data")


def test_api_key_and_gravix_api_keys_are_combined_without_duplicates() -> None:
    env = {"API_KEY": "alpha", "GRAVIX_API_KEYS": " beta, gamma ,,alpha"}
    assert load_settings(environ=env).api_keys == ("alpha", "beta", "gamma")
    assert load_settings(environ={"GRAVIX_API_KEYS": "x,y"}).api_keys == ("x", "y")


def test_api_keys_never_appear_in_the_repr() -> None:
    s = load_settings(api_keys=["s3cret-key-value"], environ={})
    assert "s3cret" not in repr(s)
    assert "1 key" in repr(s)


@pytest.mark.parametrize("keys", [["has space"], [""], ["tab\tkey"]])
def test_api_keys_with_whitespace_or_empty_are_refused(keys: list[str]) -> None:
    with pytest.raises(ConfigError):
        load_settings(api_keys=keys, environ={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4096", 4096),
        ("64MiB", 64 * 1024**2),
        ("64mib", 64 * 1024**2),
        ("10MB", 10_000_000),
        ("1.5KiB", 1536),
        ("2G", 2_000_000_000),
        ("1TiB", 1024**4),
        (" 7 B ", 7),
        (123, 123),
    ],
)
def test_sizes_accept_bytes_and_binary_and_decimal_units(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MiB", "-5", "5 parsecs", "1e3", "64XiB", "0x10"])
def test_malformed_sizes_are_a_config_error_with_a_hint(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_size(text)
    assert info.value.hint
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("GRAVIX_PORT", "http"),
        ("GRAVIX_PORT", "70000"),
        ("GRAVIX_PORT", "-1"),
        ("GRAVIX_PORT", "80.5"),
        ("GRAVIX_RATE_LIMIT", "-1"),
        ("GRAVIX_RATE_LIMIT", "inf"),
        ("GRAVIX_ROTATE_SECONDS", "0"),
        ("GRAVIX_ROTATE_SECONDS", "nan"),
        ("GRAVIX_ROTATE_BYTES", "lots"),
        ("GRAVIX_RETENTION_DAYS", "0"),
        ("GRAVIX_RETENTION_DAYS", "1.5"),
        ("GRAVIX_WAREHOUSE_RETENTION_DAYS", "-3"),
        ("GRAVIX_MIN_FREE_BYTES", "much"),
    ],
)
def test_bad_environment_values_are_a_config_error_naming_the_setting(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={var: value})
    assert value in str(info.value) or "size" in str(info.value)


def test_bad_flag_value_is_refused_even_when_the_environment_is_fine() -> None:
    with pytest.raises(ConfigError):
        load_settings(port=99999, environ={"GRAVIX_PORT": "9000"})


def test_fault_plan_comes_from_the_environment_only() -> None:
    plan = '[{"op": "fsync", "action": "eio"}]'
    assert load_settings(environ={"GRAVIX_FAULT_PLAN": plan}).fault_plan == plan
    assert plan not in repr(load_settings(environ={"GRAVIX_FAULT_PLAN": plan}))


def test_warehouse_retention_follows_raw_retention_when_not_given() -> None:
    """`cleanup --days 60` alone must not fail on a default warehouse retention of 30."""
    assert load_settings(retention_days=60, environ={}).warehouse_retention_days == 60
    env = {"GRAVIX_RETENTION_DAYS": "45"}
    assert load_settings(environ=env).warehouse_retention_days == 45
    assert (
        load_settings(retention_days=60, warehouse_retention_days=90, environ={})
    ).warehouse_retention_days == 90


def test_store_comes_from_the_flag_or_gravix_store_with_the_aws_variables() -> None:
    env = {
        "GRAVIX_STORE": "s3://env-bucket/a/b/",
        "AWS_ACCESS_KEY_ID": "AKID",
        "AWS_SECRET_ACCESS_KEY": "SECRET",
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
    }
    s = load_settings(environ=env)
    assert s.store is not None
    assert (s.store.url, s.store.bucket, s.store.prefix) == (
        "s3://env-bucket/a/b",
        "env-bucket",
        "a/b",
    )
    assert (s.store.region, s.store.endpoint) == ("eu-west-1", "http://127.0.0.1:9000")
    assert (s.store.access_key, s.store.secret_key) == ("AKID", "SECRET")
    assert "SECRET" not in repr(s) and "SECRET" not in repr(s.store)
    flag = load_settings(store="s3://flag-bucket", environ=env)
    assert flag.store is not None and (flag.store.bucket, flag.store.prefix) == ("flag-bucket", "")
    assert load_settings(environ={}).store is None


@pytest.mark.parametrize(
    "url",
    ["/var/lib/x", "gs://bucket/x", "s3://", "s3://Bad_Bucket/x", "s3://ok-bucket/../x",
     "s3://ok-bucket/a?b=1", "s3://ok-bucket/a b"],
)  # fmt: skip
def test_a_store_that_is_not_an_s3_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(store=url, environ={})
    assert info.value.exit_code == 2 and info.value.hint and "s3://" in info.value.hint


def test_node_id_from_flag_or_environment_defaults_to_the_host_name() -> None:
    import socket

    assert load_settings(node_id="ingest-1", environ={"GRAVIX_NODE_ID": "x"}).node_id == "ingest-1"
    assert load_settings(environ={"GRAVIX_NODE_ID": "ingest_2"}).node_id == "ingest_2"
    assert load_settings(environ={}).node_id == socket.gethostname().split(".")[0]


@pytest.mark.parametrize("bad", ["a/b", "a.b", "-lead", "x" * 64, "ünï", "a b", "../x"])
def test_a_node_id_that_cannot_be_in_an_object_name_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="node id"):
        load_settings(node_id=bad, environ={})
