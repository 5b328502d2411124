"""coordinator.yaml, TUNNELMESH_* variables and command-line flags -> typed settings, with one-line errors
that name the offending key, variable or flag.

pydantic-settings builds them: models mirror the YAML tree, so `s3.max_size` is also
$TUNNELMESH_S3__MAX_SIZE (`__` between levels). Sources, strongest first: flags, the environment,
coordinator.yaml, the defaults."""

from __future__ import annotations

import contextvars
import ipaddress
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from tunnelmesh.store.backends import MetaConfig
from tunnelmesh.store.datadir import DataDir


class ConfigError(Exception):
    """A bad configuration value; the message names the key."""


_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "t": 2**40,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: str | int) -> int:
    """`10GB` is decimal, `10GiB`/`10Gi` binary, a bare number is bytes."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative: {value}")
        return value
    m = _SIZE.match(str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {value!r} (use e.g. 500MB, 10GB, 1GiB or plain bytes)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: str | float) -> float:
    """`30s`, `15m`, `12h`, `7d`, `2w`, or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value).lower())
        if not m:
            raise ValueError(f"not a duration: {value!r} (use e.g. 7d, 12h, 30m, 30s or plain seconds)")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if seconds < 0:
        raise ValueError(f"duration must not be negative: {value!r}")
    return seconds


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Invalid(ValueError):
    """A check across fields of one section; `key` is the path, below that section, of the field it names."""

    def __init__(self, key: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.key = key


def _whole_number(value: Any) -> int | None:
    """An int, or the digits of one (the environment gives text); None for anything else, True included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def _path(value: Any) -> Path:
    if value is None or str(value).strip() == "":
        raise ValueError("expected a path")
    return Path(os.path.expanduser(str(value)))


def _optional_path(value: Any) -> Path | None:
    return None if value in (None, "") else _path(value)


def parse_listen(value: Any) -> Listen:
    """HOST:PORT or [IPv6]:PORT; an empty host is 127.0.0.1."""
    if isinstance(value, Listen):
        return value
    text = str(value).strip()
    m = re.match(r"^\[([^\]]+)\]:(\d+)$", text) or re.match(r"^([^:]*):(\d+)$", text)
    if not m:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host, port = m.group(1) or "127.0.0.1", int(m.group(2))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return Listen(host, port)


def _optional_listen(value: Any) -> Listen | None:
    """s3.listen: empty, null or false turns the second listener off."""
    return None if value in (None, "", False) else parse_listen(value)


def bind_refusal(listen: Listen) -> str | None:
    """Why a wildcard or public address is refused unless the operator explicitly allows it (None: fine)."""
    try:
        ip = ipaddress.ip_address(listen.host)
    except ValueError:
        if listen.host == "localhost":
            return None
        return (
            f"{listen.host!r} is not an IP address; bind to the coordinator's mesh IP "
            "(or pass --allow-public to bind a name)"
        )
    if ip.is_unspecified:
        return f"{listen} listens on every interface; bind to the mesh IP, or pass --allow-public if you really mean it"
    if not (ip.is_loopback or ip.is_private or ip.is_link_local):
        return f"{listen.host} is a public address; bind to the mesh IP, or pass --allow-public if you really mean it"
    return None


# a listen address in the model: parsed from text by us, never decoded as JSON by the environment source
ListenAddress = Annotated[Listen, NoDecode, PlainValidator(parse_listen), PlainSerializer(str)]
OptionalListenAddress = Annotated[
    Listen | None, NoDecode, PlainValidator(_optional_listen), PlainSerializer(lambda v: None if v is None else str(v))
]


class _Section(BaseModel):
    """One mapping of coordinator.yaml: unknown keys are refused, the values never change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)


MAX_TIMEOUT = 86400.0  # a day; any limit longer than that is a mistake, not a setting


class Limits(_Section):
    """Protection against clients that are slow, huge or many; the defaults suit a mesh coordinator."""

    max_object_size: int = 5 * 2**40  # S3's own limit
    max_header_size: int = 64 * 1024  # the request line plus headers
    # the HTTP server's read buffer per connection: the most one request-body message carries, and the most a
    # request head may fill before max_header_size is checked. Larger buffers cost less CPU per uploaded GiB
    # (64 KiB 4.3 s, 408 KiB 3.4 s, 1 MiB 3.2 s), but every open connection may fill its buffer with a head
    # that never ends until idle_timeout: max_connections x this, per listener and worker, is the memory a
    # client who may connect can hold (64 KiB on a network you do not trust). Never below max_header_size
    read_buffer_size: int = 408 * 1024
    # seconds a connection may go without a complete request head, counted from its opening or from
    # its previous response: a silent connection, an idle keep-alive one and a slowly sent head are
    # all closed after it (the HTTP server keeps one deadline for the three)
    idle_timeout: float = 30.0
    header_timeout: float | None = None  # the older name of idle_timeout; when both are set the smaller wins
    # seconds a request may wait on its client at a time, in both directions: for the next chunk of
    # the request body, or for the client to take the next 256 KiB of the response (so a download must
    # move 256 KiB per body_timeout, 4.3 KiB/s at the default); past it the request ends (400
    # RequestTimeout, or the response cut off and the connection closed) and its slot is freed
    body_timeout: float = 60.0
    # bytes per second a request body (or response) must average: all of a request's waits on its client
    # together may last body_timeout (a head start) plus one second per min_body_rate bytes moved, so a
    # client dripping a byte now and then cannot hold a slot for hours. Holding one costs a client this
    # rate; 1 KiB/s is far below any link a mesh carries S3 traffic over (Apache's default is 500 B/s)
    min_body_rate: int = 1024
    # open connections per listener per worker, idle ones included; more wait in the listen backlog.
    # Idle connections are cheap and closed after idle_timeout, so this is high: 2,000 held-open
    # connections must not lock out the next client
    max_connections: int = 4096
    max_requests: int = 256  # requests in flight per worker; more wait for a free slot

    @field_validator("*", mode="before")
    @classmethod
    def _parse(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        if name == "header_timeout" and value is None:
            return None
        parsed: float
        if name.endswith(("_size", "_rate")):
            parsed = parse_size(value)
        elif name.endswith("_timeout"):
            parsed = parse_duration(value)
            # nan and inf pass a "> 0" check, and the HTTP server takes whole milliseconds
            if not math.isfinite(parsed) or parsed > MAX_TIMEOUT:
                raise ValueError(f"expected seconds up to {MAX_TIMEOUT:.0f}, got {value!r}")
        else:
            number = _whole_number(value)
            if number is None:
                raise ValueError(f"expected a whole number, got {value!r}")
            parsed = number
        if parsed <= 0:
            raise ValueError("must be greater than zero")
        return parsed

    @model_validator(mode="after")
    def _header_room(self) -> Limits:
        if self.max_header_size < 8192:
            raise Invalid(("max_header_size",), "must be at least 8KiB")
        return self

    @property
    def head_timeout(self) -> float:
        """The one deadline the HTTP server enforces for a request head, idle time before it included."""
        if self.header_timeout is None:
            return self.idle_timeout
        return min(self.idle_timeout, self.header_timeout)


TLS_VERSIONS = ("1.2", "1.3")


class Tls(_Section):
    """A listener's certificate and key (PEM files): granian serves HTTPS with them (worker.py), and the
    supervisor checks that they make a pair before any worker starts (tls.py)."""

    cert: Path
    # unencrypted (mode 0600): granian 2.8.7 aborts its worker on any encrypted key, password or not, so
    # there is no key_password (tls.py refuses an encrypted key in one line instead)
    key: Path
    # 1.2 by default: older SDKs and tools still speak no 1.3
    min_version: str = "1.2"

    @field_validator("cert", "key", mode="before")
    @classmethod
    def _file(cls, value: Any) -> Path:
        return _path(value)

    @field_validator("min_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> str:
        # YAML reads an unquoted 1.2 as a number
        text = f"{value:.1f}" if isinstance(value, float) else str(value).strip()
        if text not in TLS_VERSIONS:
            raise ValueError(f'expected "1.2" or "1.3", got {value!r}')
        return text


NODE_ID_MAX = 63
_NODE_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def default_node_id(port: int) -> str:
    """`<host name>-<port>`, lowercased, every other character a dash, at most 63 characters (the port
    kept): two coordinators on one host differ by their listener, and the id reads as a DNS label."""
    suffix = f"-{port}"
    host = re.sub(r"[^a-z0-9]+", "-", socket.gethostname().lower()).strip("-") or "node"
    return host[: NODE_ID_MAX - len(suffix)].rstrip("-") + suffix


def _node_id(value: Any) -> str:
    if not isinstance(value, str) or not _NODE_ID.fullmatch(value):
        raise ValueError(f"expected 1 to {NODE_ID_MAX} of a-z, 0-9 and '-' (not first or last), got {value!r}")
    return value


def sse_key_file_refusal(path: Path, data_dir: Path, blob_dir: Path | None) -> str | None:
    """Why a key file may not be where it is (None: fine): never inside the data dir or the blob dir, so a
    copy or backup of those never holds the keys that open them."""
    resolved = path.resolve()
    for name, d in (("the data dir", data_dir), ("s3.blob_dir", blob_dir)):
        if d is not None and resolved.is_relative_to(d.resolve()):
            return (
                f"must not be inside {name} ({d}): a copy or backup of it would hold the keys; "
                "keep the key file elsewhere and back it up separately"
            )
    return None


def parse_sse_key_file(s3: dict[str, Any], data_dir: Path, blob_dir: Path | None) -> Path | None:
    """s3.sse_key_file: an absolute path outside the data dir and the blob dir (it is read at start)."""
    raw = s3.get("sse_key_file")
    if raw in (None, ""):
        return None
    path = Path(os.path.expanduser(str(raw)))
    refusal = sse_key_file_refusal(path, data_dir, blob_dir)
    if refusal:
        raise ConfigError(f"s3.sse_key_file: {refusal}")
    return path


def _duration(value: Any, at_least: float = 0.0, above: bool = False, suffix: str = "") -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise ValueError(f"{e}{suffix}") from None
    if above and seconds <= at_least:
        raise ValueError("must be greater than zero")
    if seconds < at_least:
        raise ValueError(f"must be at least {at_least:g}s")
    return seconds


MAX_METADATA_POOL = 64
MIN_STALE_UPLOAD_EXPIRY = 1.0  # the expiry checks at a tenth of it; shorter would only spin


class S3(_Section):
    """The `s3:` mapping: the object store, its listener, and where its data and metadata live."""

    data_dir: Path = Path("tunnelmesh-data")
    max_size: int = 10 * 10**9
    listen: OptionalListenAddress = Listen("127.0.0.1", 9000)
    scrub_interval: float = 7 * 86400.0  # seconds between background integrity scrubs; 0: never
    scrub_rate: int = 50 * 10**6  # bytes per second the background scrub reads, at most
    # a multipart upload no part has reached for this long is aborted (its parts freed)
    stale_upload_expiry: float = 7 * 86400.0
    # a postgresql:// URI (it may hold a password: masked in any repr), or None for SQLite in the data dir
    metadata: SecretStr | None = None
    metadata_pool: int = 4  # PostgreSQL connections per process
    metadata_timeout: float = 5.0  # seconds a request's metadata operation may wait
    # the blob dir shared with other coordinators, or None (or <data_dir>/blobs) for <data_dir>/blobs
    blob_dir: Path | None = None
    node_id: str | None = None  # None: derived from the host name and the S3 listen port (default_node_id)
    # how often each worker says its node is alive (store/heartbeat.py), and how long a node may be
    # silent before another takes over its leftovers (only with metadata shared by several coordinators)
    heartbeat_interval: float = 5.0
    node_timeout: float = 60.0
    # how far ahead an object-lock retention may reach: a COMPLIANCE one can never be shortened, so a peer
    # that may lock objects could otherwise make them undeletable for a century (docs/data-protection.md 5)
    max_retention_days: int = 3650
    # seconds between lifecycle passes (store/lifecycle.py): each reads only what is due
    lifecycle_interval: float = 600.0
    # SSE-S3's master key file (store/sse.py); None: no encryption offered
    sse_key_file: Path | None = None
    # how often the sse-rewrap duty looks for data keys an older master key wraps (store/rewrap.py); 0: never
    sse_rewrap_interval: float = 3600.0
    tls: Tls | None = None  # HTTPS on s3.listen

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir(cls, value: Any) -> Path:
        return _path(value)

    @field_validator("blob_dir", "sse_key_file", mode="before")
    @classmethod
    def _optional_paths(cls, value: Any) -> Path | None:
        return _optional_path(value)

    @field_validator("max_size", mode="before")
    @classmethod
    def _max_size(cls, value: Any) -> int:
        return parse_size(value)

    @field_validator("scrub_rate", mode="before")
    @classmethod
    def _scrub_rate(cls, value: Any) -> int:
        rate = parse_size(value)
        if rate <= 0:
            raise ValueError("must be greater than zero (bytes per second, e.g. 50MB)")
        return rate

    @field_validator("scrub_interval", mode="before")
    @classmethod
    def _scrub_interval(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("stale_upload_expiry", mode="before")
    @classmethod
    def _stale_upload_expiry(cls, value: Any) -> float:
        return _duration(value, at_least=MIN_STALE_UPLOAD_EXPIRY)

    @field_validator("heartbeat_interval", "node_timeout", mode="before")
    @classmethod
    def _liveness(cls, value: Any) -> float:
        return _duration(value, above=True)

    @field_validator("lifecycle_interval", mode="before")
    @classmethod
    def _lifecycle_interval(cls, value: Any) -> float:
        return _duration(value, at_least=1)

    @field_validator("sse_rewrap_interval", mode="before")
    @classmethod
    def _sse_rewrap_interval(cls, value: Any) -> float:
        return _duration(value, suffix=" (0: never)")

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> Any:
        """No message ever quotes the URI: it may hold a password."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not re.match(r"^postgres(ql)?://", value.strip()):
            raise ValueError("expected a postgresql:// or postgres:// URI (or no key for SQLite in data_dir)")
        uri = value.strip()
        try:
            from psycopg.conninfo import conninfo_to_dict

            conninfo_to_dict(uri)
        except Exception:
            # the parser's own message may quote the URI
            raise ValueError("not a valid libpq URI") from None
        return uri

    @field_validator("metadata_pool", mode="before")
    @classmethod
    def _metadata_pool(cls, value: Any) -> int:
        pool = _whole_number(value)
        if pool is None or not 1 <= pool <= MAX_METADATA_POOL:
            raise ValueError(f"expected a whole number from 1 to {MAX_METADATA_POOL}, got {value!r}")
        return pool

    @field_validator("metadata_timeout", mode="before")
    @classmethod
    def _metadata_timeout(cls, value: Any) -> float:
        timeout = parse_duration(value)
        if not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT:
            raise ValueError(f"expected seconds above 0 and up to {MAX_TIMEOUT:.0f}")
        return timeout

    @field_validator("node_id", mode="before")
    @classmethod
    def _node_id(cls, value: Any) -> str:
        return _node_id(value)

    @field_validator("max_retention_days", mode="before")
    @classmethod
    def _max_retention_days(cls, value: Any) -> int:
        days = _whole_number(value)
        if days is None or days < 1:
            raise ValueError("must be a whole number of days, at least 1")
        return days

    @property
    def shared_blob_dir(self) -> Path | None:
        """s3.blob_dir, or None where it is the default <data_dir>/blobs (today's layout)."""
        if self.blob_dir is None or self.blob_dir.resolve() == (self.data_dir / "blobs").resolve():
            return None
        return self.blob_dir

    @model_validator(mode="after")
    def _across(self) -> S3:
        """A node is taken over only after missing several heartbeats in a row: one slow commit must not
        get a live node's writers retired."""
        if self.node_timeout < 3 * self.heartbeat_interval:
            raise Invalid(
                ("node_timeout",), f"must be at least 3 heartbeat intervals ({3 * self.heartbeat_interval:g}s)"
            )
        blob_dir = self.shared_blob_dir
        if blob_dir is not None:
            if blob_dir.resolve() == self.data_dir.resolve():
                raise Invalid(("blob_dir",), "must not be the data dir itself (leave it unset for <data_dir>/blobs)")
            if self.metadata is None:
                raise Invalid(
                    ("blob_dir",),
                    "a shared blob dir needs s3.metadata (PostgreSQL): SQLite's metadata is one node's",
                )
        if self.sse_key_file is not None:
            refusal = sse_key_file_refusal(self.sse_key_file, self.data_dir, blob_dir)
            if refusal:
                raise Invalid(("sse_key_file",), refusal)
        return self


MIN_METRICS_TOKEN = 16
METRICS_TOKEN_ENV = "TUNNELMESH_METRICS__TOKEN"  # metrics.token, so it need not sit in the YAML file
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


class Metrics(_Section):
    """The `metrics:` mapping: who may read /metrics, and where the workers' metric files live."""

    # a bearer token just for /metrics (masked in any repr); None: admin credentials only (or public)
    token: SecretStr | None = None
    public: bool = False  # /metrics open to anyone who reaches the listener
    dir: Path | None = None  # None: $RUNTIME_DIRECTORY/metrics, else a temporary dir
    # buckets labelled one by one in a scrape; past it only the totals (a series per bucket costs Prometheus)
    max_bucket_series: int = 500

    @field_validator("token", mode="before")
    @classmethod
    def _token(cls, value: Any) -> Any:
        """No message quotes the token."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None:
            return None
        if not isinstance(value, str) or len(value.strip()) < MIN_METRICS_TOKEN:
            raise ValueError(f"expected a string of at least {MIN_METRICS_TOKEN} characters")
        return value.strip()

    @field_validator("public", mode="before")
    @classmethod
    def _public(cls, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"expected true or false, got {value!r}")

    @field_validator("dir", mode="before")
    @classmethod
    def _dir(cls, value: Any) -> Path | None:
        return _optional_path(value)

    @field_validator("max_bucket_series", mode="before")
    @classmethod
    def _max_bucket_series(cls, value: Any) -> int:
        series = _whole_number(value)
        if series is None or series < 0:
            raise ValueError(f"expected a whole number >= 0, got {value!r}")
        return series


ENV_PREFIX = "TUNNELMESH_"
# the metadata URI from the environment, so its password need not sit in the YAML file: the name it had
# before the settings mirrored the YAML tree ($TUNNELMESH_S3__METADATA), kept so no deployment breaks
METADATA_ENV = "TUNNELMESH_S3_METADATA"
ENV_ALIASES: dict[str, tuple[str, ...]] = {METADATA_ENV: ("s3", "metadata")}
# the command-line flags that set a key, as error messages name them
FLAGS: dict[tuple[str, ...], str] = {
    ("listen",): "--listen",
    ("s3", "data_dir"): "--data-dir",
    ("allow_public",): "--allow-public",
}
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

# the parsed coordinator.yaml for the Settings being built (load() sets it): the file's source reads it
_yaml_tree: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("tunnelmesh_yaml", default=None)


class _YamlTree(PydanticBaseSettingsSource):
    """coordinator.yaml, read and checked for YAML errors by load() (its messages name the file)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ hands over the whole tree

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_tree.get() or {})


class _Environment(EnvSettingsSource):
    """TUNNELMESH_<PATH> with `__` between levels, plus the older names of ENV_ALIASES (the new name wins)."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        for alias, path in ENV_ALIASES.items():
            value = self.env_vars.get(alias if self.case_sensitive else alias.lower())
            if value and _dig(data, path) is None:
                node = data
                for part in path[:-1]:
                    node = node.setdefault(part, {})
                node[path[-1]] = value
        return data


def _dig(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = tree
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


class Settings(BaseSettings):
    """Every setting, in the shape of coordinator.yaml. Sources, strongest first: flags (keyword arguments),
    TUNNELMESH_* variables, coordinator.yaml, the defaults. The flat names callers use (`max_size`,
    `s3_listen`, ...) are read-only properties over the tree."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    listen: ListenAddress = Listen("127.0.0.1", 8080)
    workers: int = 0  # 0: one per core
    log_level: str = "info"
    log_format: str = "text"  # text (key=value) or json, one object per line
    region: str = "us-east-1"
    allow_public: bool = False  # bind wildcard and public addresses (--allow-public)
    limits: Limits = Field(default_factory=Limits)
    s3: S3 = Field(default_factory=S3)
    metrics: Metrics = Field(default_factory=Metrics)
    tls: Tls | None = None  # HTTPS on listen

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _Environment(settings_cls), _YamlTree(settings_cls)

    @field_validator("limits", "s3", "metrics", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return {} if value is None else value  # `s3:` with nothing under it

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> int:
        workers = _whole_number(value)
        if workers is None or workers < 0:
            raise ValueError(f"expected a whole number >= 0, got {value!r}")
        return workers

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> str:
        level = str(value).strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"expected debug, info, warning or error, got {level!r}")
        return level

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: Any) -> str:
        fmt = str(value).strip().lower()
        if fmt not in LOG_FORMATS:
            raise ValueError(f"expected text or json, got {value!r}")
        return fmt

    @field_validator("region", mode="before")
    @classmethod
    def _region(cls, value: Any) -> str:
        region = str(value)
        if not re.fullmatch(r"[a-z0-9-]{1,32}", region):
            raise ValueError(f"invalid region name {region!r}")
        return region

    @model_validator(mode="after")
    def _listeners(self) -> Settings:
        listens: list[tuple[tuple[str, ...], Listen]] = [(("listen",), self.listen)]
        if self.s3.listen is not None:
            listens.append((("s3", "listen"), self.s3.listen))
        for key, listen in listens:
            refusal = None if self.allow_public else bind_refusal(listen)
            if refusal:
                raise Invalid(key, refusal)
        s3_listen = self.s3.listen
        same = s3_listen is not None and (s3_listen.host, s3_listen.port) == (self.listen.host, self.listen.port)
        if same and self.listen.port != 0:
            raise Invalid(("s3", "listen"), "must differ from listen")
        return self

    # ---- the flat names every caller uses -------------------------------------------------------

    @property
    def s3_listen(self) -> Listen | None:
        return self.s3.listen

    @property
    def data_dir(self) -> Path:
        return self.s3.data_dir

    @property
    def max_size(self) -> int:
        return self.s3.max_size

    @property
    def scrub_interval(self) -> float:
        return self.s3.scrub_interval

    @property
    def scrub_rate(self) -> int:
        return self.s3.scrub_rate

    @property
    def stale_upload_expiry(self) -> float:
        return self.s3.stale_upload_expiry

    @property
    def metadata(self) -> MetaConfig:
        uri = self.s3.metadata.get_secret_value() if self.s3.metadata is not None else None
        return MetaConfig(uri, self.s3.metadata_pool, self.s3.metadata_timeout)

    @property
    def blob_dir(self) -> Path | None:
        """The blob dir shared with other coordinators, or None for <data_dir>/blobs."""
        return self.s3.shared_blob_dir

    @property
    def node_id(self) -> str:
        return self.s3.node_id or default_node_id((self.s3.listen or self.listen).port)

    @property
    def heartbeat_interval(self) -> float:
        return self.s3.heartbeat_interval

    @property
    def node_timeout(self) -> float:
        return self.s3.node_timeout

    @property
    def max_retention_days(self) -> int:
        return self.s3.max_retention_days

    @property
    def lifecycle_interval(self) -> float:
        return self.s3.lifecycle_interval

    @property
    def sse_key_file(self) -> Path | None:
        return self.s3.sse_key_file

    @property
    def sse_rewrap_interval(self) -> float:
        return self.s3.sse_rewrap_interval

    @property
    def s3_tls(self) -> Tls | None:
        return self.s3.tls

    @property
    def metrics_token(self) -> str | None:
        return self.metrics.token.get_secret_value() if self.metrics.token is not None else None

    @property
    def metrics_public(self) -> bool:
        return self.metrics.public

    @property
    def metrics_dir(self) -> Path | None:
        return self.metrics.dir

    @property
    def metrics_max_bucket_series(self) -> int:
        return self.metrics.max_bucket_series

    @property
    def node(self) -> str:
        """This coordinator's node id: it claims writer tags under it, and names its temporaries with it."""
        return self.node_id

    @property
    def files(self) -> DataDir:
        """Where this coordinator's files and blobs are (store/datadir.py)."""
        return DataDir(self.data_dir, self.blob_dir, self.node)


# each mapping of the tree, by its path: the keys an "unknown key" message lists
SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    (): Settings,
    ("limits",): Limits,
    ("s3",): S3,
    ("metrics",): Metrics,
    ("tls",): Tls,
    ("s3", "tls"): Tls,
}


def env_name(path: tuple[str, ...]) -> str:
    """The variable that sets a key: s3.max_size -> TUNNELMESH_S3__MAX_SIZE."""
    return ENV_PREFIX + "__".join(path).upper()


def _named(path: tuple[str, ...], flags: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    """Where the value at `path` came from, as the operator wrote it: the flag, the variable or the key."""
    if _dig(flags, path) is not None:
        return FLAGS.get(path, ".".join(path))
    env = {k.upper(): v for k, v in environ.items()}
    candidates = [env_name(path)] + [alias for alias, p in ENV_ALIASES.items() if p == path]
    candidates += [env_name(path[:i]) for i in range(len(path) - 1, 0, -1)]  # a section given as JSON
    for name in candidates:
        if env.get(name):
            return f"${name}"
    return ".".join(path)


def _one_line(error: ValidationError, flags: Mapping[str, Any]) -> ConfigError:
    """pydantic's first error as today's one line: `<key or $VARIABLE>: <what is wrong>`, never the value
    of a secret (pydantic's own text is used only for errors that do not quote their input)."""
    first = error.errors(include_url=False)[0]
    path = tuple(str(p) for p in first["loc"])
    cause = (first.get("ctx") or {}).get("error")
    kind = first["type"]
    if isinstance(cause, Invalid):
        path, message = path + cause.key, str(cause)
    elif kind == "value_error" and cause is not None:
        message = str(cause)
    elif kind == "extra_forbidden":
        known = ", ".join(sorted(SECTIONS.get(path[:-1], Settings).model_fields))
        message = f"unknown key (known: {known})"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = "expected a mapping"
    elif kind == "missing":
        message = "required" + (" (TLS needs cert and key)" if path[-2:-1] == ("tls",) else "")
    else:
        message = first["msg"]
    return ConfigError(f"{_named(path, flags, os.environ)}: {message.splitlines()[0] if message else kind}")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def load(
    path: Path | None,
    *,
    allow_public: bool = False,
    data_dir: Path | None = None,
    listen: str | None = None,
) -> Settings:
    """coordinator.yaml (None: none) under the TUNNELMESH_* variables under the flags given here; a flag
    left out (None, False) sets nothing, so the variable or the file still does."""
    raw = _read_yaml(path) if path is not None else {}
    flags: dict[str, Any] = {}
    if allow_public:
        flags["allow_public"] = True
    if listen is not None:
        flags["listen"] = listen
    if data_dir is not None:
        flags["s3"] = {"data_dir": data_dir}
    token = _yaml_tree.set(raw)
    try:
        settings = Settings(**flags)
    except ValidationError as e:
        raise _one_line(e, flags) from None
    except SettingsError as e:
        # a section set as one variable that is not JSON: pydantic-settings names the field, not the variable
        m = re.search(r'field "([^"]+)"', str(e))
        raise ConfigError(f"${env_name((m.group(1),)) if m else ENV_PREFIX + '*'}: not valid JSON") from None
    finally:
        _yaml_tree.reset(token)
    if settings.s3.node_id is None:
        # fixed now: the host name must not change a running coordinator's node id
        s3 = settings.s3.model_copy(update={"node_id": settings.node_id})
        settings = settings.model_copy(update={"s3": s3})
    return settings
