"""coordinator.yaml -> typed settings, with one-line errors that name the offending key."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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


@dataclass(frozen=True)
class Limits:
    """Protection against clients that are slow, huge or many; the defaults suit a mesh coordinator."""

    max_object_size: int = 5 * 2**40  # S3's own limit
    max_header_size: int = 64 * 1024  # the request line plus headers
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

    @property
    def head_timeout(self) -> float:
        """The one deadline the HTTP server enforces for a request head, idle time before it included."""
        if self.header_timeout is None:
            return self.idle_timeout
        return min(self.idle_timeout, self.header_timeout)


@dataclass(frozen=True)
class Settings:
    listen: Listen = field(default_factory=lambda: Listen("127.0.0.1", 8080))
    s3_listen: Listen | None = field(default_factory=lambda: Listen("127.0.0.1", 9000))
    data_dir: Path = Path("tunnelmesh-data")
    max_size: int = 10 * 10**9
    region: str = "us-east-1"
    workers: int = 0  # 0: one per core
    allow_public: bool = False
    log_level: str = "info"
    limits: Limits = field(default_factory=Limits)
    scrub_interval: float = 7 * 86400.0  # seconds between background integrity scrubs; 0: never
    scrub_rate: int = 50 * 10**6  # bytes per second the background scrub reads, at most
    # a multipart upload no part has reached for this long is aborted (its parts freed)
    stale_upload_expiry: float = 7 * 86400.0
    metadata: MetaConfig = field(default_factory=MetaConfig)
    # the blob dir shared with other coordinators (s3.blob_dir), or None for <data_dir>/blobs
    blob_dir: Path | None = None
    node_id: str = ""  # "": derived from the host name and the S3 listen port (default_node_id)
    # how often each worker says its node is alive (store/heartbeat.py), and how long a node may be
    # silent before another takes over its leftovers (only with metadata shared by several coordinators)
    heartbeat_interval: float = 5.0
    node_timeout: float = 60.0
    # how far ahead an object-lock retention may reach: a COMPLIANCE one can never be shortened, so a peer
    # that may lock objects could otherwise make them undeletable for a century (docs/data-protection.md 5)
    max_retention_days: int = 3650
    # seconds between lifecycle passes (store/lifecycle.py): each reads only what is due
    lifecycle_interval: float = 600.0
    # SSE-S3's master key file (store/sse.py); None: no encryption offered. Never inside the data or blob dir,
    # so a copy or backup of those never holds the keys that open them
    sse_key_file: Path | None = None
    # how often the sse-rewrap duty looks for data keys an older master key wraps (store/rewrap.py); 0: never
    sse_rewrap_interval: float = 3600.0
    # /metrics (obs/scrape.py): its own bearer token, or open to anyone on the listener, and the dir the
    # workers' prometheus-client files live in (None: $RUNTIME_DIRECTORY/metrics, else a temporary dir)
    metrics_token: str | None = None
    metrics_public: bool = False
    metrics_dir: Path | None = None
    # buckets labelled one by one in a scrape; past it only the totals (a series per bucket costs Prometheus)
    metrics_max_bucket_series: int = 500

    @property
    def node(self) -> str:
        """This coordinator's node id: it claims writer tags under it, and names its temporaries with it."""
        return self.node_id or default_node_id((self.s3_listen or self.listen).port)

    @property
    def files(self) -> DataDir:
        """Where this coordinator's files and blobs are (store/datadir.py)."""
        return DataDir(self.data_dir, self.blob_dir, self.node)


def parse_liveness(s3: dict[str, Any], defaults: Settings) -> tuple[float, float]:
    """s3.heartbeat_interval and s3.node_timeout. A node is taken over only after missing several
    heartbeats in a row: one slow commit must not get a live node's writers retired."""
    values = []
    for key, default in (("heartbeat_interval", defaults.heartbeat_interval), ("node_timeout", defaults.node_timeout)):
        try:
            value = parse_duration(s3[key]) if key in s3 else default
        except ValueError as e:
            raise ConfigError(f"s3.{key}: {e}") from None
        if value <= 0:
            raise ConfigError(f"s3.{key}: must be greater than zero")
        values.append(value)
    interval, timeout = values
    if timeout < 3 * interval:
        raise ConfigError(f"s3.node_timeout: must be at least 3 heartbeat intervals ({3 * interval:g}s)")
    return interval, timeout


NODE_ID_MAX = 63
_NODE_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def default_node_id(port: int) -> str:
    """`<host name>-<port>`, lowercased, every other character a dash, at most 63 characters (the port
    kept): two coordinators on one host differ by their listener, and the id reads as a DNS label."""
    suffix = f"-{port}"
    host = re.sub(r"[^a-z0-9]+", "-", socket.gethostname().lower()).strip("-") or "node"
    return host[: NODE_ID_MAX - len(suffix)].rstrip("-") + suffix


def parse_node_id(value: Any) -> str:
    if not isinstance(value, str) or not _NODE_ID.fullmatch(value):
        raise ConfigError(
            f"s3.node_id: expected 1 to {NODE_ID_MAX} of a-z, 0-9 and '-' (not first or last), got {value!r}"
        )
    return value


def parse_sse_key_file(s3: dict[str, Any], data_dir: Path, blob_dir: Path | None) -> Path | None:
    """s3.sse_key_file: an absolute path outside the data dir and the blob dir (it is read at start)."""
    raw = s3.get("sse_key_file")
    if raw in (None, ""):
        return None
    path = Path(os.path.expanduser(str(raw)))
    resolved = path.resolve()
    for name, d in (("the data dir", data_dir), ("s3.blob_dir", blob_dir)):
        if d is not None and resolved.is_relative_to(d.resolve()):
            raise ConfigError(
                f"s3.sse_key_file: must not be inside {name} ({d}): a copy or backup of it would hold the keys; "
                "keep the key file elsewhere and back it up separately"
            )
    return path


def parse_blob_dir(s3: dict[str, Any], data_dir: Path, metadata: MetaConfig) -> Path | None:
    """s3.blob_dir, or None where it is the default <data_dir>/blobs (today's layout)."""
    if s3.get("blob_dir") in (None, ""):
        return None
    blob_dir = Path(os.path.expanduser(str(s3["blob_dir"])))
    if blob_dir.resolve() == (data_dir / "blobs").resolve():
        return None
    if blob_dir.resolve() == data_dir.resolve():
        raise ConfigError("s3.blob_dir: must not be the data dir itself (leave it unset for <data_dir>/blobs)")
    if metadata.uri is None:
        raise ConfigError(
            "s3.blob_dir: a shared blob dir needs s3.metadata (PostgreSQL): SQLite's metadata is one node's"
        )
    return blob_dir


def parse_listen(key: str, value: Any) -> Listen:
    text = str(value).strip()
    m = re.match(r"^\[([^\]]+)\]:(\d+)$", text) or re.match(r"^([^:]*):(\d+)$", text)
    if not m:
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    host, port = m.group(1) or "127.0.0.1", int(m.group(2))
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key}: port {port} out of range")
    return Listen(host, port)


def check_bind_address(key: str, listen: Listen, allow_public: bool) -> None:
    """Refuse wildcard and public addresses unless the operator explicitly allows them."""
    if allow_public:
        return
    try:
        ip = ipaddress.ip_address(listen.host)
    except ValueError:
        if listen.host == "localhost":
            return
        raise ConfigError(
            f"{key}: {listen.host!r} is not an IP address; bind to the coordinator's mesh IP "
            "(or pass --allow-public to bind a name)"
        ) from None
    if ip.is_unspecified:
        raise ConfigError(
            f"{key}: {listen} listens on every interface; bind to the mesh IP, "
            "or pass --allow-public if you really mean it"
        )
    if not (ip.is_loopback or ip.is_private or ip.is_link_local):
        raise ConfigError(
            f"{key}: {listen.host} is a public address; bind to the mesh IP, "
            "or pass --allow-public if you really mean it"
        )


MAX_TIMEOUT = 86400.0  # a day; any limit longer than that is a mistake, not a setting
_TOP_KEYS = {"listen", "s3", "workers", "log_level", "region", "limits", "metrics"}
_LIMIT_KEYS = {f for f in Limits.__dataclass_fields__}


def parse_limits(raw: Any) -> Limits:
    if raw is None:
        return Limits()
    if not isinstance(raw, dict):
        raise ConfigError("limits: expected a mapping")
    values: dict[str, Any] = {}
    for k, v in raw.items():
        if k not in _LIMIT_KEYS:
            raise ConfigError(f"limits.{k}: unknown key (known: {', '.join(sorted(_LIMIT_KEYS))})")
        try:
            if k.endswith(("_size", "_rate")):
                values[k] = parse_size(v)
            elif k.endswith("_timeout"):
                values[k] = parse_duration(v)
                # nan and inf pass a "> 0" check, and the HTTP server takes whole milliseconds
                if not math.isfinite(values[k]) or values[k] > MAX_TIMEOUT:
                    raise ConfigError(f"limits.{k}: expected seconds up to {MAX_TIMEOUT:.0f}, got {v!r}")
            else:
                values[k] = int(v)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"limits.{k}: {e}") from None
        if values[k] <= 0:
            raise ConfigError(f"limits.{k}: must be greater than zero")
    if values.get("max_header_size", Limits.max_header_size) < 8192:
        raise ConfigError("limits.max_header_size: must be at least 8KiB")
    return Limits(**values)


_S3_KEYS = {
    "data_dir",
    "max_size",
    "listen",
    "scrub_interval",
    "scrub_rate",
    "stale_upload_expiry",
    "metadata",
    "metadata_pool",
    "metadata_timeout",
    "blob_dir",
    "node_id",
    "heartbeat_interval",
    "node_timeout",
    "max_retention_days",
    "lifecycle_interval",
    "sse_key_file",
    "sse_rewrap_interval",
}
# the metadata URI from the environment, so its password need not sit in the YAML file
METADATA_ENV = "TUNNELMESH_S3_METADATA"
MAX_METADATA_POOL = 64


def parse_metadata(s3: dict[str, Any]) -> MetaConfig:
    """s3.metadata (or $TUNNELMESH_S3_METADATA, which wins), s3.metadata_pool and s3.metadata_timeout.
    No message ever quotes the URI: it may hold a password."""
    defaults = MetaConfig()
    uri: Any = os.environ.get(METADATA_ENV) or s3.get("metadata")
    key = f"${METADATA_ENV}" if os.environ.get(METADATA_ENV) else "s3.metadata"
    if uri is not None:
        if not isinstance(uri, str) or not re.match(r"^postgres(ql)?://", uri.strip()):
            raise ConfigError(f"{key}: expected a postgresql:// or postgres:// URI (or no key for SQLite in data_dir)")
        uri = uri.strip()
        try:
            from psycopg.conninfo import conninfo_to_dict

            conninfo_to_dict(uri)
        except Exception:
            # the parser's own message may quote the URI
            raise ConfigError(f"{key}: not a valid libpq URI") from None
    pool = s3.get("metadata_pool", defaults.pool)
    if not isinstance(pool, int) or isinstance(pool, bool) or not 1 <= pool <= MAX_METADATA_POOL:
        raise ConfigError(f"s3.metadata_pool: expected a whole number from 1 to {MAX_METADATA_POOL}, got {pool!r}")
    timeout = defaults.timeout
    if "metadata_timeout" in s3:
        try:
            timeout = parse_duration(s3["metadata_timeout"])
        except ValueError as e:
            raise ConfigError(f"s3.metadata_timeout: {e}") from None
        if not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT:
            raise ConfigError(f"s3.metadata_timeout: expected seconds above 0 and up to {MAX_TIMEOUT:.0f}")
    return MetaConfig(uri, pool, timeout)


_METRICS_KEYS = {"token", "public", "dir", "max_bucket_series"}
# the metrics token from the environment, so it need not sit in the YAML file (the pydantic-settings name)
METRICS_TOKEN_ENV = "TUNNELMESH_METRICS__TOKEN"
MIN_METRICS_TOKEN = 16


def parse_metrics(raw: Any) -> dict[str, Any]:
    """The `metrics` block as Settings' metrics_* fields. No message quotes the token."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("metrics: expected a mapping")
    for k in raw:
        if k not in _METRICS_KEYS:
            raise ConfigError(f"metrics.{k}: unknown key (known: {', '.join(sorted(_METRICS_KEYS))})")
    key = "metrics.token"
    token: Any = raw.get("token")
    if os.environ.get(METRICS_TOKEN_ENV):
        key, token = f"${METRICS_TOKEN_ENV}", os.environ[METRICS_TOKEN_ENV]
    if token is not None:
        if not isinstance(token, str) or len(token.strip()) < MIN_METRICS_TOKEN:
            raise ConfigError(f"{key}: expected a string of at least {MIN_METRICS_TOKEN} characters")
        token = token.strip()
    public = raw.get("public", False)
    if not isinstance(public, bool):
        raise ConfigError(f"metrics.public: expected true or false, got {public!r}")
    directory = None if raw.get("dir") in (None, "") else Path(os.path.expanduser(str(raw["dir"])))
    series = raw.get("max_bucket_series", Settings.metrics_max_bucket_series)
    if isinstance(series, bool) or not isinstance(series, int) or series < 0:
        raise ConfigError(f"metrics.max_bucket_series: expected a whole number >= 0, got {series!r}")
    return {
        "metrics_token": token,
        "metrics_public": public,
        "metrics_dir": directory,
        "metrics_max_bucket_series": series,
    }


MIN_STALE_UPLOAD_EXPIRY = 1.0  # the expiry checks at a tenth of it; shorter would only spin


def load(path: Path | None, *, allow_public: bool = False) -> Settings:
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    for k in raw:
        if k not in _TOP_KEYS:
            raise ConfigError(f"{k}: unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    s3 = raw.get("s3") or {}
    if not isinstance(s3, dict):
        raise ConfigError("s3: expected a mapping")
    for k in s3:
        if k not in _S3_KEYS:
            raise ConfigError(f"s3.{k}: unknown key (known: {', '.join(sorted(_S3_KEYS))})")

    defaults = Settings()
    listen = parse_listen("listen", raw["listen"]) if "listen" in raw else defaults.listen
    s3_listen = defaults.s3_listen
    if "listen" in s3:
        s3_listen = None if s3["listen"] in (None, "", False) else parse_listen("s3.listen", s3["listen"])
    try:
        max_size = parse_size(s3["max_size"]) if "max_size" in s3 else defaults.max_size
    except ValueError as e:
        raise ConfigError(f"s3.max_size: {e}") from None
    try:
        scrub_interval = parse_duration(s3["scrub_interval"]) if "scrub_interval" in s3 else defaults.scrub_interval
    except ValueError as e:
        raise ConfigError(f"s3.scrub_interval: {e}") from None
    try:
        scrub_rate = parse_size(s3["scrub_rate"]) if "scrub_rate" in s3 else defaults.scrub_rate
    except ValueError as e:
        raise ConfigError(f"s3.scrub_rate: {e}") from None
    if scrub_rate <= 0:
        raise ConfigError("s3.scrub_rate: must be greater than zero (bytes per second, e.g. 50MB)")
    stale_upload_expiry = defaults.stale_upload_expiry
    if "stale_upload_expiry" in s3:
        try:
            stale_upload_expiry = parse_duration(s3["stale_upload_expiry"])
        except ValueError as e:
            raise ConfigError(f"s3.stale_upload_expiry: {e}") from None
        if stale_upload_expiry < MIN_STALE_UPLOAD_EXPIRY:
            raise ConfigError(f"s3.stale_upload_expiry: must be at least {MIN_STALE_UPLOAD_EXPIRY:g}s")
    workers = raw.get("workers", 0)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise ConfigError(f"workers: expected a whole number >= 0, got {workers!r}")
    log_level = str(raw.get("log_level", "info")).lower()
    if log_level not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"log_level: expected debug, info, warning or error, got {log_level!r}")
    region = str(raw.get("region", defaults.region))
    if not re.fullmatch(r"[a-z0-9-]{1,32}", region):
        raise ConfigError(f"region: invalid region name {region!r}")
    data_dir = Path(os.path.expanduser(str(s3.get("data_dir", defaults.data_dir))))

    check_bind_address("listen", listen, allow_public)
    if s3_listen is not None:
        check_bind_address("s3.listen", s3_listen, allow_public)
        if (s3_listen.host, s3_listen.port) == (listen.host, listen.port) and listen.port != 0:
            raise ConfigError("s3.listen: must differ from listen")
    limits = parse_limits(raw.get("limits"))
    metadata = parse_metadata(s3)
    blob_dir = parse_blob_dir(s3, data_dir, metadata)
    node_id = parse_node_id(s3["node_id"]) if "node_id" in s3 else default_node_id((s3_listen or listen).port)
    heartbeat_interval, node_timeout = parse_liveness(s3, defaults)
    sse_key_file = parse_sse_key_file(s3, data_dir, blob_dir)
    try:
        rewrap = parse_duration(s3.get("sse_rewrap_interval", defaults.sse_rewrap_interval))
    except ValueError as e:
        raise ConfigError(f"s3.sse_rewrap_interval: {e} (0: never)") from None
    max_retention_days = s3.get("max_retention_days", defaults.max_retention_days)
    if isinstance(max_retention_days, bool) or not isinstance(max_retention_days, int) or max_retention_days < 1:
        raise ConfigError("s3.max_retention_days: must be a whole number of days, at least 1")
    lifecycle_interval = defaults.lifecycle_interval
    if "lifecycle_interval" in s3:
        try:
            lifecycle_interval = parse_duration(s3["lifecycle_interval"])
        except ValueError as e:
            raise ConfigError(f"s3.lifecycle_interval: {e}") from None
        if lifecycle_interval < 1:
            raise ConfigError("s3.lifecycle_interval: must be at least 1s")
    metrics = parse_metrics(raw.get("metrics"))
    return Settings(
        **metrics,
        lifecycle_interval=lifecycle_interval,
        sse_key_file=sse_key_file,
        sse_rewrap_interval=float(rewrap),
        max_retention_days=max_retention_days,
        heartbeat_interval=heartbeat_interval,
        node_timeout=node_timeout,
        metadata=metadata,
        blob_dir=blob_dir,
        node_id=node_id,
        limits=limits,
        listen=listen,
        s3_listen=s3_listen,
        data_dir=data_dir,
        max_size=max_size,
        region=region,
        workers=workers,
        allow_public=allow_public,
        log_level=log_level,
        scrub_interval=scrub_interval,
        scrub_rate=scrub_rate,
        stale_upload_expiry=stale_upload_expiry,
    )
