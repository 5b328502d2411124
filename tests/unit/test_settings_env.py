"""Every setting from a TUNNELMESH_* variable named by its path in coordinator.yaml; flags beat the
environment, which beats the file; errors name the variable or flag; the older variable names still work;
secrets are masked wherever settings are printed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, SecretStr

from tunnelmesh import server
from tunnelmesh.cli.main import cli
from tunnelmesh.config import ConfigError, Listen, Settings, Tls, load

SECRET = "pw-3c9e1f7a"
PG = f"postgresql://tm:{SECRET}@db.mesh/tunnelmesh"
TOKEN = "metrics-token-" + SECRET

# for each key: the variable's text and the value it must give (Tls: both files must be named, so
# each tls key also gets its pair). A key missing here fails test_the_table_covers_every_setting.
TLS_PAIR = {"cert": "/etc/tm/cert.pem", "key": "/etc/tm/key.pem"}
CASES: dict[tuple[str, ...], tuple[str, Any]] = {
    ("listen",): ("127.0.0.1:18080", Listen("127.0.0.1", 18080)),
    ("workers",): ("3", 3),
    ("log_level",): ("DEBUG", "debug"),
    ("log_format",): ("json", "json"),
    ("region",): ("eu-west-2", "eu-west-2"),
    ("allow_public",): ("true", True),
    ("limits", "max_object_size"): ("1GiB", 2**30),
    ("limits", "max_header_size"): ("32KiB", 32 * 1024),
    ("limits", "read_buffer_size"): ("1MiB", 2**20),
    ("limits", "idle_timeout"): ("5s", 5.0),
    ("limits", "header_timeout"): ("2s", 2.0),
    ("limits", "body_timeout"): ("2m", 120.0),
    ("limits", "min_body_rate"): ("2KB", 2000),
    ("limits", "max_connections"): ("64", 64),
    ("limits", "max_requests"): ("512", 512),
    ("s3", "data_dir"): ("/srv/tm-data", Path("/srv/tm-data")),
    ("s3", "max_size"): ("20GB", 20 * 10**9),
    ("s3", "listen"): ("127.0.0.1:19000", Listen("127.0.0.1", 19000)),
    ("s3", "scrub_interval"): ("1d", 86400.0),
    ("s3", "scrub_rate"): ("1MB", 10**6),
    ("s3", "stale_upload_expiry"): ("12h", 43200.0),
    ("s3", "metadata"): (PG, PG),
    ("s3", "metadata_pool"): ("16", 16),
    ("s3", "metadata_timeout"): ("2s", 2.0),
    ("s3", "blob_dir"): ("/srv/shared-blobs", Path("/srv/shared-blobs")),
    ("s3", "node_id"): ("node-7", "node-7"),
    ("s3", "heartbeat_interval"): ("10s", 10.0),
    ("s3", "node_timeout"): ("5m", 300.0),
    ("s3", "max_retention_days"): ("30", 30),
    ("s3", "lifecycle_interval"): ("5m", 300.0),
    ("s3", "sse_key_file"): ("/etc/tm/sse.json", Path("/etc/tm/sse.json")),
    ("s3", "sse_rewrap_interval"): ("0", 0.0),
    ("s3", "tls", "cert"): ("/etc/tm/s3-cert.pem", Path("/etc/tm/s3-cert.pem")),
    ("s3", "tls", "key"): ("/etc/tm/s3-key.pem", Path("/etc/tm/s3-key.pem")),
    ("s3", "tls", "min_version"): ("1.3", "1.3"),
    ("metrics", "token"): (TOKEN, TOKEN),
    ("metrics", "public"): ("yes", True),
    ("metrics", "dir"): ("/run/tm-metrics", Path("/run/tm-metrics")),
    ("metrics", "max_bucket_series"): ("0", 0),
    ("tls", "cert"): ("/etc/tm/main-cert.pem", Path("/etc/tm/main-cert.pem")),
    ("tls", "key"): ("/etc/tm/main-key.pem", Path("/etc/tm/main-key.pem")),
    ("tls", "min_version"): ("1.3", "1.3"),
}
# what a key needs besides itself to be valid
NEEDS: dict[tuple[str, ...], dict[str, str]] = {
    ("s3", "blob_dir"): {"TUNNELMESH_S3__METADATA": PG},  # a shared blob dir needs PostgreSQL
}


def var(path: tuple[str, ...]) -> str:
    return "TUNNELMESH_" + "__".join(path).upper()


def leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key of the settings tree, found by walking the models (a section is a model, or one or None)."""
    out: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        sections = [a for a in (field.annotation, *getattr(field.annotation, "__args__", ())) if _is_model(a)]
        out += leaves(sections[0], (*prefix, name)) if sections else [(*prefix, name)]
    return out


def _is_model(t: object) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def value_at(settings: Settings, path: tuple[str, ...]) -> Any:
    value: Any = settings
    for part in path:
        value = getattr(value, part)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TUNNELMESH_* variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.upper().startswith("TUNNELMESH_"):
            monkeypatch.delenv(name)


def test_the_table_covers_every_setting() -> None:
    walked = leaves(Settings)
    assert ("s3", "max_size") in walked and ("limits", "max_requests") in walked and ("tls", "cert") in walked
    assert sorted(walked) == sorted(CASES)


@pytest.mark.parametrize("path", sorted(CASES), ids=lambda p: ".".join(p))
def test_every_setting_is_overridable_by_its_variable(monkeypatch: pytest.MonkeyPatch, path: tuple[str, ...]) -> None:
    text, expected = CASES[path]
    if path[-2:-1] == ("tls",):  # a certificate needs its key, and the other way round
        for k, v in TLS_PAIR.items():
            monkeypatch.setenv(var((*path[:-1], k)), v)
    for k, v in NEEDS.get(path, {}).items():
        monkeypatch.setenv(k, v)
    default = value_at(load(None), path) if path[-2:-1] != ("tls",) else None
    assert default != expected, "the case must change the setting"
    monkeypatch.setenv(var(path), text)
    assert value_at(load(None), path) == expected


def test_flat_names_read_the_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNNELMESH_S3__MAX_SIZE", "20GB")
    monkeypatch.setenv("TUNNELMESH_S3__LISTEN", "127.0.0.1:19001")
    monkeypatch.setenv("TUNNELMESH_METRICS__TOKEN", TOKEN)
    monkeypatch.setenv("TUNNELMESH_METRICS__DIR", "/run/m")
    monkeypatch.setenv("TUNNELMESH_METRICS__PUBLIC", "true")
    monkeypatch.setenv("TUNNELMESH_METRICS__MAX_BUCKET_SERIES", "7")
    monkeypatch.setenv("TUNNELMESH_S3__METADATA", PG)
    monkeypatch.setenv("TUNNELMESH_S3__TLS__CERT", "/c.pem")
    monkeypatch.setenv("TUNNELMESH_S3__TLS__KEY", "/k.pem")
    s = load(None)
    assert (s.max_size, s.s3_listen, s.metadata.uri) == (20 * 10**9, Listen("127.0.0.1", 19001), PG)
    assert (s.metrics_token, s.metrics_dir, s.metrics_public, s.metrics_max_bucket_series) == (
        TOKEN,
        Path("/run/m"),
        True,
        7,
    )
    assert s.s3_tls == Tls(cert=Path("/c.pem"), key=Path("/k.pem")) and s.tls is None
    assert s.node_id == s.node and s.node.endswith("-19001")


def test_environment_beats_the_file_and_flags_beat_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"listen: 127.0.0.1:1001\ns3:\n  data_dir: {tmp_path / 'yaml'}\n  max_size: 1GB\nlimits:\n  max_requests: 8\n"
    )
    s = load(cfg)
    assert (s.listen.port, s.data_dir, s.max_size, s.limits.max_requests) == (1001, tmp_path / "yaml", 10**9, 8)
    monkeypatch.setenv("TUNNELMESH_LISTEN", "127.0.0.1:1002")
    monkeypatch.setenv("TUNNELMESH_S3__DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("TUNNELMESH_S3__MAX_SIZE", "2GB")
    s = load(cfg)
    # a variable replaces one key: the file's other keys in the same section stay
    assert (s.listen.port, s.data_dir, s.max_size, s.limits.max_requests) == (1002, tmp_path / "env", 2 * 10**9, 8)
    s = load(cfg, listen="127.0.0.1:1003", data_dir=tmp_path / "flag")
    assert (s.listen.port, s.data_dir, s.max_size) == (1003, tmp_path / "flag", 2 * 10**9)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TUNNELMESH_S3__MAX_SIZE": "lots"}, "$TUNNELMESH_S3__MAX_SIZE"),
        ({"TUNNELMESH_LIMITS__MAX_REQUESTS": "0"}, "$TUNNELMESH_LIMITS__MAX_REQUESTS"),
        ({"TUNNELMESH_LISTEN": "0.0.0.0:8080"}, "$TUNNELMESH_LISTEN"),
        ({"TUNNELMESH_S3__LISTEN": "nonsense"}, "$TUNNELMESH_S3__LISTEN"),
        ({"TUNNELMESH_WORKERS": "many"}, "$TUNNELMESH_WORKERS"),
        ({"TUNNELMESH_METRICS__PUBLIC": "maybe"}, "$TUNNELMESH_METRICS__PUBLIC"),
        ({"TUNNELMESH_METRICS__TOKEN": "short"}, "$TUNNELMESH_METRICS__TOKEN"),
        ({"TUNNELMESH_TLS__CERT": "/c", "TUNNELMESH_TLS__KEY": "/k", "TUNNELMESH_TLS__MIN_VERSION": "1.1"}, None),
        # checks across keys name the key that came from the environment
        ({"TUNNELMESH_S3__NODE_TIMEOUT": "1s"}, "$TUNNELMESH_S3__NODE_TIMEOUT"),
        ({"TUNNELMESH_S3__METADATA": f"mysql://tm:{SECRET}@h/db"}, "$TUNNELMESH_S3__METADATA"),
        ({"TUNNELMESH_S3__NOPE": "1"}, "$TUNNELMESH_S3__NOPE"),
    ],
)
def test_an_error_names_the_variable_in_one_line(monkeypatch: pytest.MonkeyPatch, env: dict, named: str | None) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    named = named or "$TUNNELMESH_TLS__MIN_VERSION"
    with pytest.raises(ConfigError) as e:
        load(None)
    assert str(e.value).startswith(f"{named}: "), str(e.value)
    assert "\n" not in str(e.value) and SECRET not in str(e.value)


def test_a_key_from_the_file_is_named_as_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("s3:\n  max_size: lots\n")
    with pytest.raises(ConfigError, match=r"^s3\.max_size: "):
        load(cfg)
    monkeypatch.setenv("TUNNELMESH_S3__MAX_SIZE", "1GB")  # the variable wins, so the file's value is not used
    assert load(cfg).max_size == 10**9


def test_the_coordinator_flags_win_and_are_named(tmp_path: Path) -> None:
    """`coordinator --listen/--data-dir`: both stop at the configuration, so nothing starts."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("listen: 127.0.0.1:2\n")
    runner = CliRunner()
    env = {"TUNNELMESH_LISTEN": "127.0.0.1:1"}
    res = runner.invoke(cli, ["coordinator", "--config", str(cfg), "--listen", "0.0.0.0:1"], env=env)
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "tunnelmesh: configuration error: --listen: 0.0.0.0:1 listens on every interface; bind to the mesh IP, "
        "or pass --allow-public if you really mean it"
    ]
    # the flag's data dir is the one checked against s3.blob_dir
    cfg.write_text(f"s3:\n  blob_dir: {tmp_path / 'x'}\n")
    res = runner.invoke(cli, ["coordinator", "--config", str(cfg), "--data-dir", str(tmp_path / "x")], env=env)
    assert res.exit_code == 2
    assert "s3.blob_dir: must not be the data dir itself" in res.output


def test_the_older_variable_names_still_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNNELMESH_S3_METADATA", PG)
    assert load(None).metadata.uri == PG
    other = "postgresql://tm@other/tunnelmesh"
    monkeypatch.setenv("TUNNELMESH_S3__METADATA", other)  # the name of the tree wins
    assert load(None).metadata.uri == other
    monkeypatch.delenv("TUNNELMESH_S3__METADATA")
    monkeypatch.setenv("TUNNELMESH_S3_METADATA", f"http://tm:{SECRET}@h/db")
    with pytest.raises(ConfigError) as e:
        load(None)
    assert str(e.value).startswith("$TUNNELMESH_S3_METADATA: ") and SECRET not in str(e.value)
    # the admin token is read by the supervisor and the CLI, not a key of the file
    monkeypatch.setenv("TUNNELMESH_ADMIN_TOKEN", "admin-token-" + SECRET)
    assert server.admin_token(tmp_path, create=False) == ("admin-token-" + SECRET, "$TUNNELMESH_ADMIN_TOKEN")


def test_secrets_are_masked_wherever_settings_are_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"metrics:\n  token: {TOKEN}\n")
    monkeypatch.setenv("TUNNELMESH_S3__METADATA", PG)
    s = load(cfg)
    for shown in (repr(s), str(s), s.model_dump_json(), repr(s.s3), repr(s.metrics), repr(s.metadata)):
        assert SECRET not in shown, shown
    assert isinstance(s.s3.metadata, SecretStr) and isinstance(s.metrics.token, SecretStr)
    assert "**********" in repr(s.s3)
    # the code that needs them still reads them
    assert (s.metadata.uri, s.metrics_token) == (PG, TOKEN)
