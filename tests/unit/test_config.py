"""Size parsing and configuration validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnelmesh.config import ConfigError, load, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10GB", 10 * 10**9),
        ("500MB", 500 * 10**6),
        ("1GiB", 2**30),
        ("1Gi", 2**30),
        ("4096", 4096),
        (4096, 4096),
        ("1.5GB", 1_500_000_000),
        ("2 TiB", 2 * 2**40),
        ("1kb", 1000),
        ("1K", 1024),
    ],
)
def test_sizes(text, expected) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "10XB", "-5", "", "GB", True])
def test_bad_sizes(text) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_defaults_without_a_file() -> None:
    s = load(None)
    assert str(s.listen) == "127.0.0.1:8080"
    assert s.s3_listen is not None and str(s.s3_listen) == "127.0.0.1:9000"
    assert s.data_dir == Path("tunnelmesh-data")
    assert s.max_size == 10 * 10**9


@pytest.mark.parametrize(
    ("yaml", "key"),
    [
        ("listen: '[::]:8080'\n", "listen"),
        ("listen: 0.0.0.0:1\n", "listen"),
        ("listen: 1.1.1.1:1\n", "listen"),
        ("s3:\n  listen: 0.0.0.0:1\n", "s3.listen"),
        ("s3:\n  unknown: 1\n", "s3.unknown"),
        ("workers: -1\n", "workers"),
        ("log_level: loud\n", "log_level"),
        ("listen: 127.0.0.1:99999\n", "listen"),
        ("- a list\n", "mapping"),
    ],
)
def test_bad_values_name_the_key(tmp_path, yaml, key) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(yaml)
    with pytest.raises(ConfigError) as e:
        load(p)
    assert key in str(e.value)


def test_private_mesh_addresses_are_allowed(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("listen: 10.99.0.1:8080\ns3:\n  listen: '[fd00::1]:9000'\n")
    s = load(p)
    assert s.listen.host == "10.99.0.1" and s.s3_listen is not None and s.s3_listen.host == "fd00::1"


def test_public_address_allowed_when_asked(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("listen: 0.0.0.0:8080\n")
    assert load(p, allow_public=True).listen.host == "0.0.0.0"


def test_limits_parse_sizes_and_seconds(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(
        "limits:\n  max_object_size: 1GiB\n  max_header_size: 32KiB\n  body_timeout: 15s\n  max_connections: 64\n"
    )
    limits = load(p).limits
    assert (limits.max_object_size, limits.max_header_size, limits.body_timeout, limits.max_connections) == (
        2**30,
        32 * 1024,
        15.0,
        64,
    )


@pytest.mark.parametrize(
    "yaml",
    [
        "limits:\n  nope: 1\n",
        "limits:\n  body_timeout: -1\n",
        "limits:\n  max_header_size: 1KiB\n",
        "limits:\n  max_connections: many\n",
        "limits:\n  idle_timeout: 0\n",
        "limits:\n  idle_timeout: nan\n",
        "limits:\n  idle_timeout: inf\n",
        "limits:\n  idle_timeout: 86401\n",
        "limits:\n  header_timeout: -2s\n",
        "limits:\n  max_requests: 0\n",
        "limits:\n  max_requests: lots\n",
    ],
)
def test_bad_limits_name_the_key(tmp_path, yaml) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(yaml)
    with pytest.raises(ConfigError) as e:
        load(p)
    assert "limits." + yaml.split()[1].rstrip(":") in str(e.value)


def test_connection_limits_default_to_many_idle_connections_and_few_requests(tmp_path) -> None:
    limits = load(None).limits
    assert (limits.idle_timeout, limits.header_timeout, limits.max_connections, limits.max_requests) == (
        30.0,
        None,
        4096,
        256,
    )
    assert limits.head_timeout == 30.0


def test_idle_timeout_and_max_requests_parse(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("limits:\n  idle_timeout: 5s\n  max_requests: 32\n")
    limits = load(p).limits
    assert (limits.idle_timeout, limits.max_requests, limits.head_timeout) == (5.0, 32, 5.0)


@pytest.mark.parametrize(("idle", "header", "deadline"), [(30, 2, 2.0), (2, 30, 2.0), (120, None, 120.0)])
def test_header_timeout_is_the_older_name_of_idle_timeout_and_the_smaller_wins(
    tmp_path, idle: int, header: int | None, deadline: float
) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(f"limits:\n  idle_timeout: {idle}\n" + (f"  header_timeout: {header}\n" if header else ""))
    assert load(p).limits.head_timeout == deadline


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7d", 7 * 86400.0), ("12h", 43200.0), ("30s", 30.0), ("15m", 900.0), ("2w", 14 * 86400.0), (90, 90.0)],
)
def test_stale_upload_expiry_takes_durations(tmp_path, value, seconds) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(f"s3:\n  stale_upload_expiry: {value}\n")
    assert load(p).stale_upload_expiry == seconds


def test_stale_upload_expiry_defaults_to_seven_days() -> None:
    assert load(None).stale_upload_expiry == 7 * 86400


@pytest.mark.parametrize("value", ["soon", "7 days", "-1", "0", "0.5s", "true"])
def test_bad_stale_upload_expiry_names_the_key(tmp_path, value) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(f"s3:\n  stale_upload_expiry: {value}\n")
    with pytest.raises(ConfigError) as e:
        load(p)
    assert str(e.value).startswith("s3.stale_upload_expiry: ")


@pytest.mark.parametrize(("value", "rate"), [("500", 500), ("1KiB", 1024), ("2KB", 2000), (1, 1)])
def test_min_body_rate_takes_sizes_per_second(tmp_path, value: str | int, rate: int) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(f"limits:\n  min_body_rate: {value}\n")
    assert load(p).limits.min_body_rate == rate


def test_min_body_rate_defaults_to_one_kib_a_second_and_body_timeout_to_a_minute() -> None:
    limits = load(None).limits
    assert (limits.min_body_rate, limits.body_timeout) == (1024, 60.0)


@pytest.mark.parametrize("value", ["0", "-1", "0.5", "fast", "1 KiB/s", "true"])
def test_bad_min_body_rate_names_the_key(tmp_path, value: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(f"limits:\n  min_body_rate: {value}\n")
    with pytest.raises(ConfigError) as e:
        load(p)
    assert str(e.value).startswith("limits.min_body_rate: ")


SECRET = "s3cr3t-pw-9f2c"


def test_metadata_defaults_to_sqlite_in_the_data_dir(monkeypatch) -> None:
    monkeypatch.delenv("TUNNELMESH_S3_METADATA", raising=False)
    m = load(None).metadata
    assert (m.uri, m.pool, m.timeout) == (None, 4, 5.0)
    assert m.describe(Path("d")) == f"sqlite {(Path('d') / 'meta.sqlite3').resolve()}"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_metadata_takes_a_postgresql_uri_pool_and_timeout(tmp_path, monkeypatch, scheme) -> None:
    monkeypatch.delenv("TUNNELMESH_S3_METADATA", raising=False)
    uri = f"{scheme}://tm:{SECRET}@db.mesh:5432/tunnelmesh?sslmode=require"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"s3:\n  metadata: '{uri}'\n  metadata_pool: 16\n  metadata_timeout: 2s\n")
    m = load(cfg).metadata
    assert (m.uri, m.pool, m.timeout) == (uri, 16, 2.0)
    assert m.describe(tmp_path) == f"postgresql {scheme}://tm:***@db.mesh:5432/tunnelmesh?sslmode=require"
    # nothing that prints the settings shows the password
    assert SECRET not in repr(load(cfg))


def test_metadata_uri_from_the_environment_wins(tmp_path, monkeypatch) -> None:
    env_uri = f"postgresql://tm:{SECRET}@/tunnelmesh?host=/run/postgresql"
    monkeypatch.setenv("TUNNELMESH_S3_METADATA", env_uri)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("s3:\n  metadata: postgresql://other@h/db\n")
    assert load(cfg).metadata.uri == env_uri
    assert load(None).metadata.uri == env_uri


@pytest.mark.parametrize(
    ("yaml", "key"),
    [
        (f"s3:\n  metadata: mysql://tm:{SECRET}@h/db\n", "s3.metadata"),
        (f"s3:\n  metadata: tm:{SECRET}@h/db\n", "s3.metadata"),
        (f"s3:\n  metadata: PostgreSQL://tm:{SECRET}@h/db\n", "s3.metadata"),  # libpq takes lower case only
        ("s3:\n  metadata: 5\n", "s3.metadata"),
        (f"s3:\n  metadata: 'postgresql://tm:{SECRET}@h/db?nosuchoption=1'\n", "s3.metadata"),
        ("s3:\n  metadata_pool: 0\n", "s3.metadata_pool"),
        ("s3:\n  metadata_pool: 65\n", "s3.metadata_pool"),
        ("s3:\n  metadata_pool: four\n", "s3.metadata_pool"),
        ("s3:\n  metadata_timeout: 0\n", "s3.metadata_timeout"),
        ("s3:\n  metadata_timeout: soon\n", "s3.metadata_timeout"),
        ("s3:\n  metadata_timeout: 2d\n", "s3.metadata_timeout"),
    ],
)
def test_bad_metadata_settings_name_the_key_and_never_the_password(tmp_path, monkeypatch, yaml, key) -> None:
    monkeypatch.delenv("TUNNELMESH_S3_METADATA", raising=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml)
    with pytest.raises(ConfigError) as e:
        load(cfg)
    assert str(e.value).startswith(f"{key}:") and "\n" not in str(e.value)
    assert SECRET not in str(e.value)


def test_a_bad_metadata_uri_from_the_environment_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("TUNNELMESH_S3_METADATA", f"http://tm:{SECRET}@h/db")
    with pytest.raises(ConfigError) as e:
        load(None)
    assert str(e.value).startswith("$TUNNELMESH_S3_METADATA:") and SECRET not in str(e.value)


# ---- several coordinators: s3.blob_dir and s3.node_id ---------------------------------------------


def test_blob_dir_defaults_to_the_data_dirs_blobs_and_node_id_to_host_and_s3_port(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TUNNELMESH_S3_METADATA", raising=False)
    monkeypatch.setattr("socket.gethostname", lambda: "Mesh_Host.example.COM")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"s3:\n  data_dir: {tmp_path / 'd'}\n  listen: 127.0.0.1:9123\n")
    s = load(cfg)
    assert s.blob_dir is None and s.node_id == "mesh-host-example-com-9123"
    # today's layout, unchanged
    assert s.files.blobs == tmp_path / "d" / "blobs" and s.files.tmp == tmp_path / "d" / "tmp"
    # naming the default explicitly is the default, SQLite or not
    cfg.write_text(f"s3:\n  data_dir: {tmp_path / 'd'}\n  blob_dir: {tmp_path / 'd' / 'blobs'}\n")
    assert load(cfg).blob_dir is None


def test_a_derived_node_id_is_at_most_63_characters_and_keeps_the_port(monkeypatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "a" * 70 + ".-._")
    from tunnelmesh.config import default_node_id

    node = default_node_id(65535)
    assert len(node) == 63 and node.endswith("a-65535"), node
    monkeypatch.setattr("socket.gethostname", lambda: "...")
    assert default_node_id(9000) == "node-9000"


def test_a_shared_blob_dir_needs_postgresql_metadata(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TUNNELMESH_S3_METADATA", raising=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"s3:\n  data_dir: {tmp_path / 'd'}\n  blob_dir: {tmp_path / 'shared'}\n  node_id: n1\n")
    with pytest.raises(ConfigError, match=r"^s3.blob_dir: .*needs s3.metadata") as e:
        load(cfg)
    assert "\n" not in str(e.value)
    monkeypatch.setenv("TUNNELMESH_S3_METADATA", "postgresql://tm@db/tunnelmesh")
    s = load(cfg)
    assert (s.blob_dir, s.node_id) == (tmp_path / "shared", "n1")
    assert s.files.blobs == tmp_path / "shared"
    assert s.files.tmp == tmp_path / "shared" / "tmp" / "n1"
    cfg.write_text(f"s3:\n  data_dir: {tmp_path / 'd'}\n  blob_dir: {tmp_path / 'd'}\n")
    with pytest.raises(ConfigError, match=r"^s3.blob_dir: must not be the data dir"):
        load(cfg)


@pytest.mark.parametrize("value", ["", "Node", "-n", "n-", "a_b", "a.b", "x" * 64, 7, True])
def test_a_bad_node_id_names_the_key(tmp_path, value) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"s3:\n  node_id: {value!r}\n" if isinstance(value, str) else f"s3:\n  node_id: {value}\n")
    with pytest.raises(ConfigError, match=r"^s3.node_id: "):
        load(cfg)


def test_the_sse_key_file_is_refused_inside_the_data_dir_or_the_blob_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TUNNELMESH_S3_METADATA", "postgresql://tm@db/tunnelmesh")
    cfg = tmp_path / "c.yaml"
    base = f"s3:\n  data_dir: {tmp_path / 'd'}\n  blob_dir: {tmp_path / 'shared'}\n  node_id: n1\n"
    cfg.write_text(base)
    assert load(cfg).sse_key_file is None
    cfg.write_text(base + f"  sse_key_file: {tmp_path / 'keys' / 'sse.json'}\n")
    assert load(cfg).sse_key_file == tmp_path / "keys" / "sse.json"
    for inside, name in (("d/sse.json", "the data dir"), ("shared/keys/sse.json", "s3.blob_dir")):
        cfg.write_text(base + f"  sse_key_file: {tmp_path / inside}\n")
        with pytest.raises(ConfigError, match=rf"^s3.sse_key_file: must not be inside {name}"):
            load(cfg)
    # a path that only reaches the data dir through a symlink is inside it too
    (tmp_path / "d").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "d")
    cfg.write_text(base + f"  sse_key_file: {tmp_path / 'link' / 'sse.json'}\n")
    with pytest.raises(ConfigError, match="must not be inside the data dir"):
        load(cfg)


@pytest.mark.parametrize("value", [-1, "soon", True])
def test_a_bad_sse_rewrap_interval_names_the_key(tmp_path, value) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"s3:\n  data_dir: {tmp_path / 'd'}\n  sse_rewrap_interval: {value!r}\n")
    with pytest.raises(ConfigError, match=r"^s3.sse_rewrap_interval: "):
        load(cfg)
    cfg.write_text(f"s3:\n  data_dir: {tmp_path / 'd'}\n  sse_rewrap_interval: 0\n")
    assert load(cfg).sse_rewrap_interval == 0.0
    cfg.write_text(f"s3:\n  data_dir: {tmp_path / 'd'}\n  sse_rewrap_interval: 1h\n")  # a duration, as the others
    assert load(cfg).sse_rewrap_interval == 3600.0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("lifecycle_interval", "0s"),
        ("lifecycle_interval", "soon"),
        ("max_retention_days", 0),
        ("max_retention_days", "10y"),
        ("max_retention_days", True),
    ],
)
def test_bad_lifecycle_and_retention_settings_name_their_key(tmp_path, key, value) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"s3:\n  data_dir: {tmp_path / 'd'}\n  {key}: {value!r}\n")
    with pytest.raises(ConfigError, match=rf"^s3.{key}: "):
        load(cfg)
    cfg.write_text(f"s3:\n  data_dir: {tmp_path / 'd'}\n  lifecycle_interval: 5m\n  max_retention_days: 36500\n")
    got = load(cfg)
    assert (got.lifecycle_interval, got.max_retention_days) == (300.0, 36500)
