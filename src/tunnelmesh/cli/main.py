"""The `tunnelmesh` command line: run a coordinator, or manage a running one."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit

import click
from defusedxml import ElementTree

from tunnelmesh import __version__
from tunnelmesh.cli.client import CliError, Coordinator, object_url, resolve, s3_error, shown
from tunnelmesh.cli.transfer import (
    STDIO,
    Meter,
    download,
    inside,
    open_source,
    safe_relative,
    same_as,
    upload,
    walk,
)
from tunnelmesh.config import ConfigError, parse_size


def _version() -> str:
    """The installed distribution's version (what pip shows), else the source tree's."""
    try:
        return importlib.metadata.version("tunnelmesh")
    except importlib.metadata.PackageNotFoundError:
        return __version__


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"tunnelmesh {_version()}")
        ctx.exit()


@click.group()
@click.option(
    "--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version, help="Show the version."
)
def cli() -> None:
    """tunnelmesh: mesh-network coordinator and its S3 object store."""


@cli.command("version")
def version() -> None:
    """Show the version."""
    click.echo(f"tunnelmesh {_version()}")


@cli.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="coordinator.yaml (all keys optional; embedded defaults otherwise)",
)
@click.option("--allow-public", is_flag=True, help="allow binding a wildcard or public address")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="the data dir (wins over s3.data_dir and $TUNNELMESH_S3__DATA_DIR)",
)
@click.option("--listen", default=None, help="HOST:PORT of the main listener (wins over listen and $TUNNELMESH_LISTEN)")
def coordinator(config_path: Path | None, allow_public: bool, data_dir: Path | None, listen: str | None) -> None:
    """Run the coordinator and its S3 API. Every setting is a key of coordinator.yaml or a TUNNELMESH_*
    variable named by its path (s3.max_size: TUNNELMESH_S3__MAX_SIZE); a variable wins over the file."""
    from tunnelmesh import config, server
    from tunnelmesh.store.errors import Unavailable
    from tunnelmesh.store.migrations import SchemaError

    try:
        settings = config.load(config_path, allow_public=allow_public, data_dir=data_dir, listen=listen)
        server.configure_logging(settings.log_level, settings.log_format)
        code = server.run(settings)
    except ConfigError as e:
        click.echo(f"tunnelmesh: configuration error: {e}", err=True)
        sys.exit(2)
    except SchemaError as e:
        click.echo(f"tunnelmesh: {e}", err=True)
        sys.exit(2)
    except Unavailable as e:
        # libpq's reason (it names the host or socket, never the password): the operator's first clue
        cause = str(e.__cause__).splitlines()[0] if e.__cause__ else ""
        click.echo(f"tunnelmesh: {e}" + (f": {cause}" if cause else ""), err=True)
        sys.exit(1)
    sys.exit(code)


def connection(f: Callable[..., Any]) -> Callable[..., Any]:
    """Adds --endpoint/--token/--config and passes a resolved Coordinator as `c`."""

    @click.option("--endpoint", envvar="TUNNELMESH_ENDPOINT", help="coordinator base URL, e.g. http://10.0.0.1:8080")
    @click.option(
        "--token",
        envvar="TUNNELMESH_TOKEN",
        help="a mesh token: an admin's, or a peer's own (for bucket grant/ungrant/access)",
    )
    @click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help="on the coordinator host: find the endpoint and the admin token from coordinator.yaml",
    )
    @click.pass_context
    def wrapper(
        ctx: click.Context, endpoint: str | None, token: str | None, config_path: Path | None, **kw: Any
    ) -> Any:
        return ctx.invoke(f, resolve(endpoint, token, config_path), **kw)

    wrapper.__name__ = f.__name__
    wrapper.__doc__ = f.__doc__
    return wrapper


def emit(data: Any, as_json: bool, table: Callable[[Any], list[list[str]]], headers: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    rows = [[shown(v) for v in r] for r in table(data)]  # keys and names may hold control characters
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def human(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


# ---- bucket --------------------------------------------------------------------------------


@cli.group()
def bucket() -> None:
    """Create, delete and list buckets."""


@bucket.command("create")
@click.argument("name")
@connection
def bucket_create(c: Coordinator, name: str) -> None:
    """Create bucket NAME."""
    c.api("POST", "buckets", {"name": name})
    click.echo(f"created bucket {name}")


@bucket.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True, help="delete every object and pending upload first")
@connection
def bucket_delete(c: Coordinator, name: str, force: bool) -> None:
    """Delete bucket NAME (it must be empty unless --force)."""
    c.api("DELETE", f"buckets/{quote(name, safe='')}" + ("?force=true" if force else ""))
    click.echo(f"deleted bucket {name}")


@bucket.command("list")
@click.option("--json", "as_json", is_flag=True)
@connection
def bucket_list(c: Coordinator, as_json: bool) -> None:
    """List buckets with their usage."""
    data = c.api("GET", "buckets")
    emit(
        data,
        as_json,
        lambda d: [
            [b["name"], b["owner"], str(b["objects"]), human(b["used"]), human(b["quota"])] for b in d["buckets"]
        ],
        ["name", "owner", "objects", "used", "quota"],
    )


@bucket.group("quota")
def bucket_quota() -> None:
    """Set or clear a bucket's quota."""


@bucket_quota.command("set")
@click.argument("name")
@click.argument("size")
@connection
def bucket_quota_set(c: Coordinator, name: str, size: str) -> None:
    """Limit bucket NAME to SIZE (1GB, 500MB, 1GiB, 1Gi or plain bytes)."""
    try:
        quota = parse_size(size)
    except ValueError as e:
        raise CliError(str(e)) from None
    c.api("PUT", f"buckets/{quote(name, safe='')}/quota", {"quota": quota})
    click.echo(f"quota of {name}: {human(quota)} ({quota} bytes)")


@bucket_quota.command("clear")
@click.argument("name")
@connection
def bucket_quota_clear(c: Coordinator, name: str) -> None:
    """Remove the quota of bucket NAME."""
    c.api("PUT", f"buckets/{quote(name, safe='')}/quota", {"quota": None})
    click.echo(f"quota of {name} cleared")


@bucket.command("usage")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@connection
def bucket_usage(c: Coordinator, name: str, as_json: bool) -> None:
    """Bytes used (current and noncurrent versions), objects, in-progress multipart bytes and quota of
    bucket NAME."""
    d = c.api("GET", f"buckets/{quote(name, safe='')}/usage")
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(
        f"bucket:     {d['name']}\nused:       {human(d['used'])} ({d['used']} bytes)\n"
        f"current:    {human(d['current_used'])} ({d['current_used']} bytes)\n"
        f"noncurrent: {human(d['noncurrent_used'])} ({d['noncurrent_used']} bytes, "
        f"{d['noncurrent_versions']} versions and delete markers)\n"
        f"versioning: {d['versioning'] or 'never enabled'}\n"
        f"objects:    {d['objects']}\nmultipart:  {human(d['multipart_used'])} ({d['multipart_used']} bytes)\n"
        f"quota:      {human(d['quota'])}" + (f" ({d['percent']}% used)" if d["quota"] else "")
    )


_VERSIONING = {"enable": "Enabled", "suspend": "Suspended"}


@bucket.command("versioning")
@click.argument("name")
@click.argument("action", type=click.Choice(["enable", "suspend", "status"]))
@connection
def bucket_versioning(c: Coordinator, name: str, action: str) -> None:
    """Enable or suspend versioning of bucket NAME, or show its state. Enabled, every overwrite and delete
    keeps the version it replaces (see `object versions` and `object restore`); suspended, new writes replace
    the null version, and the versions kept so far stay."""
    if action != "status":
        doc = f"<VersioningConfiguration><Status>{_VERSIONING[action]}</Status></VersioningConfiguration>"
        r = c.request("PUT", _url(c, name), params={"versioning": ""}, data=doc.encode())
        if r.status_code != 200:
            raise _s3_error(r)
    r = c.request("GET", _url(c, name), params={"versioning": ""})
    if r.status_code != 200:
        raise _s3_error(r)
    state = ElementTree.fromstring(r.content).findtext(f"{_NS}Status")
    click.echo(f"versioning of {name}: {state or 'never enabled'}")


def _target(peer: str | None, group: str | None, anyone: bool) -> dict[str, Any]:
    if sum((peer is not None, group is not None, anyone)) != 1:
        raise click.UsageError("name exactly one of --peer, --group, --anyone")
    return {"peer": peer} if peer is not None else {"group": group} if group is not None else {"anyone": True}


def _to(t: dict[str, Any]) -> str:
    return f"peer {t['peer']}" if "peer" in t else f"group {t['group']}" if "group" in t else "anyone"


def _target_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--anyone", is_flag=True, help="anyone, peers and (later) anonymous callers")(f)
    f = click.option("--group", default=None, help="a group (`peers`: every peer)")(f)
    return click.option("--peer", default=None, help="a peer id")(f)


_ROLES = click.Choice(["read", "write", "admin"])


@bucket.command("grant")
@click.argument("name")
@_target_options
@click.option("--role", type=_ROLES, required=True, help="read, write (read + put/delete) or admin (+ config)")
@click.option("--prefix", default="", help="only keys under this prefix (not with --role admin)")
@connection
def bucket_grant(
    c: Coordinator, name: str, peer: str | None, group: str | None, anyone: bool, role: str, prefix: str
) -> None:
    """Grant a peer, a group or anyone ROLE on bucket NAME (its owner, its admins and mesh admins may).
    Granting the same thing twice changes nothing."""
    doc = {**_target(peer, group, anyone), "role": role} | ({"prefix": prefix} if prefix else {})
    g = c.api("POST", f"buckets/{quote(name, safe='')}/grants", doc)
    grant = g["grant"]
    where = f" under {grant['prefix']}" if grant["prefix"] else ""
    state = "granted" if g["created"] else "already granted"
    click.echo(shown(f"{state} {grant['role']} on {name}{where} to {_to(grant['to'])} ({grant['id']})"))


@bucket.command("ungrant")
@click.argument("name")
@_target_options
@click.option("--role", type=_ROLES, default=None, help="only grants of this role")
@click.option("--prefix", default=None, help="only grants of this prefix ('' = the whole bucket)")
@connection
def bucket_ungrant(
    c: Coordinator, name: str, peer: str | None, group: str | None, anyone: bool, role: str | None, prefix: str | None
) -> None:
    """Remove the grants of bucket NAME to a peer, a group or anyone (of one role and prefix if given)."""
    doc = _target(peer, group, anyone) | ({"role": role} if role else {})
    if prefix is not None:
        doc["prefix"] = prefix
    removed = c.api("DELETE", f"buckets/{quote(name, safe='')}/grants", doc)["removed"]
    for g in removed:
        where = f" under {g['prefix']}" if g["prefix"] else ""
        click.echo(shown(f"removed {g['role']} on {name}{where} from {_to(g['to'])} ({g['id']})"))


@bucket.command("access")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@connection
def bucket_access(c: Coordinator, name: str, as_json: bool) -> None:
    """Who can do what in bucket NAME: each peer, group and anyone, at the bucket root and at each granted
    prefix, with the reason (owner, admin, grant:ID, default:..., implicit)."""
    data = c.api("GET", f"buckets/{quote(name, safe='')}/access")
    if not as_json:
        click.echo(f"bucket {data['bucket']}  owner {data['owner']}  default {data['default_bucket_access']}")
    emit(
        data,
        as_json,
        lambda d: [
            [p["kind"], p["name"], p["label"], r["prefix"] or "/", r["role"], r["why"]]
            for p in d["principals"]
            for r in p["rights"]
        ],
        ["kind", "name", "label", "prefix", "role", "why"],
    )


@cli.group()
def storage() -> None:
    """The whole store: status against s3.max_size, and an exact recount."""


@storage.command("status")
@click.option("--json", "as_json", is_flag=True)
@connection
def storage_status(c: Coordinator, as_json: bool) -> None:
    """The store against s3.max_size, the disk's free space, one line per bucket."""
    d = c.api("GET", "storage")
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(
        f"store: {human(d['used'])} of {human(d['max_size'])} ({d['percent']}%), disk free {human(d['disk_free'])}"
    )
    if d.get("metadata"):
        click.echo(f"metadata: {d['metadata']}")
    for n in d.get("nodes", []):
        seen = "never" if n["silent_for"] is None else f"{n['silent_for']:g}s ago"
        click.echo(
            f"node {n['node']}{' (this one)' if n['node'] == d.get('node') else ''}: "
            f"{'live' if n['live'] else 'SILENT'}, at {n['listen'] or '?'}, last heartbeat {seen}, "
            f"started {n['started'] or '?'}"
        )
    # the coordinator's own records are outside max_size, so they are shown apart
    click.echo(f"coordinator state (_tunnelmesh, not counted in max_size): {human(d.get('system_used'))}")
    click.echo(f"pending multipart uploads: {d['pending_uploads']} holding {human(d['pending_bytes'])}")
    if s := d.get("scrub"):
        click.echo(
            f"last scrub: finished {s['last_finished'] or 'never'}, {s['objects']} objects ({human(s['bytes'])}), "
            f"{s['rotten_count']} rotten"
            + ("; a scrub is running or was cut short" if s["running_or_interrupted"] else "")
        )
        for r in s["rotten"]:
            click.echo(f"ROTTEN  {r['bucket']}/{r['key']}: {r['problem']}")
    emit(
        d,
        False,
        lambda x: [
            [
                b["name"],
                str(b["objects"]),
                human(b["used"]),
                f"{b['pending_uploads']} / {human(b['pending_bytes'])}",
                human(b["quota"]),
                "-" if b["percent"] is None else f"{b['percent']}%",
            ]
            for b in x["buckets"]
        ],
        ["bucket", "objects", "used", "pending uploads", "quota", "percent"],
    )


@storage.command("verify")
@click.option("--json", "as_json", is_flag=True)
@connection
def storage_verify(c: Coordinator, as_json: bool) -> None:
    """Recount usage from the metadata; exit 1 if any counter differs."""
    d = c.api("GET", "storage/verify")
    if as_json:
        click.echo(json.dumps(d, indent=2))
    else:
        for b in d["buckets"]:
            if b["ok"]:
                click.echo(
                    f"ok        {b['bucket']}: {b['used']} bytes, {b['objects']} objects, "
                    f"{b['multipart_used']} multipart bytes"
                )
            else:
                click.echo(
                    f"MISMATCH  {b['bucket']}: counters {b['used']}/{b['objects']}/{b['multipart_used']}, "
                    f"recount {b['counted_used']}/{b['counted_objects']}/{b['counted_multipart_used']}"
                )
    if not d["ok"]:
        sys.exit(1)


@storage.command("scrub")
@click.option("--repair", is_flag=True, help="move the blobs of rotten objects to quarantine/ and delete the objects")
@click.option("--json", "as_json", is_flag=True)
@connection
def storage_scrub(c: Coordinator, repair: bool, as_json: bool) -> None:
    """Re-hash every stored object against its recorded MD5; exit 1 if any rotted."""
    d = c.api("POST", "storage/scrub" + ("?repair=true" if repair else ""), timeout=None)
    if as_json:
        click.echo(json.dumps(d, indent=2))
    else:
        click.echo(f"checked {d['objects']} objects ({human(d['bytes'])})")
        for r in d["rotten"]:
            version = f" (version {r['version_id']})" if r.get("version_id") else ""
            done = {"repaired": "  (quarantined, deleted)", "locked": "  (quarantined; locked, so not deleted)"}
            click.echo(
                f"ROTTEN  {r['bucket']}/{r['key']}{version}: {r['problem']}" + done.get(r.get("outcome", ""), "")
            )
    if d["rotten"]:
        sys.exit(1)


@storage.command("migrate")
@click.option(
    "--to",
    "target",
    default=None,
    metavar="URI",
    help="the PostgreSQL database, postgresql://user:password@host/db (empty). Default: $TUNNELMESH_S3_METADATA, "
    "else s3.metadata. A password given here shows in `ps` to every local user: prefer the variable.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="the coordinator's coordinator.yaml: its s3.data_dir and node id",
)
def storage_migrate(target: str | None, config_path: Path | None) -> None:
    """Move a STOPPED coordinator's metadata from SQLite (in its data dir) to PostgreSQL.

    Run it on the coordinator's machine while the coordinator is stopped: it takes the data dir's lock and
    is refused while a coordinator runs. Every table is copied in one transaction and verified (row
    counts, usage, a digest of every row); blobs stay where they are. The SQLite database is then fenced:
    a coordinator started on it (or on a copy of it) refuses to run. Safe to run again: after a completed
    move it checks the target and says so; after an interrupted one it finishes it."""
    from psycopg.conninfo import conninfo_to_dict

    from tunnelmesh import config
    from tunnelmesh.store.migrate import MigrateError, migrate
    from tunnelmesh.store.migrations import SchemaError

    os.umask(0o077)  # as the coordinator: the data dir's files are its alone
    try:
        settings = config.load(config_path, allow_public=True)  # nothing listens: binding rules do not apply
        uri = target or settings.metadata.uri
        if not uri:
            raise ConfigError("no target: give --to postgresql://... or set $TUNNELMESH_S3_METADATA")
        if not re.match(r"^postgres(ql)?://", uri.strip()):
            raise ConfigError("--to: expected a postgresql:// or postgres:// URI")
        try:
            conninfo_to_dict(uri)
        except Exception:  # libpq's message may quote the string, password and all
            raise ConfigError("--to: not a connection string libpq can read") from None
        if settings.blob_dir is not None:
            # the blobs stay in <data_dir>/blobs: a coordinator looking for them in a shared blob dir finds none
            raise ConfigError("s3.blob_dir: migrate leaves the blobs in the data dir; unset s3.blob_dir to migrate")
        report = migrate(settings.data_dir, settings.node, uri)
    except (ConfigError, SchemaError) as e:
        click.echo(f"tunnelmesh: refusing to migrate: {e}", err=True)
        sys.exit(2)
    except MigrateError as e:
        click.echo(f"tunnelmesh: {'refusing to migrate' if e.exit_code == 2 else 'migration failed'}: {e}", err=True)
        sys.exit(e.exit_code)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report.moved_at))
    if report.state == "already done":
        click.echo(f"already done: the metadata of {settings.data_dir} was moved to {report.target} at {when}")
        click.echo(f"{report.target} holds this data dir's records (node {settings.node}); nothing changed")
    else:
        verb = "copied" if report.state == "copied" else "an interrupted migration's copy verified"
        click.echo(f"moved the metadata of {settings.data_dir} from SQLite to {report.target}")
        click.echo(f"{verb}: " + ", ".join(f"{name} {n}" for name, n in report.rows.items()))
        click.echo(
            f"verified: row counts, usage of {report.buckets} bucket(s) ({human(report.bytes)}), "
            f"a digest of every row; {report.seconds:.1f} s"
        )
        click.echo("the SQLite database is fenced: a coordinator on it refuses to start; the blobs stay where they are")
    for w in report.warnings:
        click.echo(f"warning: {w}")
    if settings.metadata.uri is None:
        click.echo(
            f"add to {config_path or 'coordinator.yaml'}, under s3:\n  metadata: {report.target}\n"
            "(with the password in place of ***), or set $TUNNELMESH_S3_METADATA to the URI"
        )


# ---- peer ----------------------------------------------------------------------------------


# ---- sse -----------------------------------------------------------------------------------


@cli.group()
def sse() -> None:
    """SSE-S3: the master key file (s3.sse_key_file) and the rows each key protects."""


_KEY_FILE_OPTIONS = [
    click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help="the coordinator's coordinator.yaml: its s3.sse_key_file",
    ),
    click.option(
        "--key-file", type=click.Path(path_type=Path), default=None, help="the key file (else s3.sse_key_file)"
    ),
]


def _key_file(config_path: Path | None, key_file: Path | None) -> Path:
    from tunnelmesh import config

    settings = config.load(config_path, allow_public=True)  # refuses a key file inside the data or blob dir
    path = key_file or settings.sse_key_file
    if path is None:
        raise ConfigError("no key file: give --key-file PATH or set s3.sse_key_file")
    if key_file is not None:
        config.parse_sse_key_file({"sse_key_file": str(key_file)}, settings.data_dir, settings.blob_dir)
    return path


def _with_key_file_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_KEY_FILE_OPTIONS):
        f = option(f)
    return f


@sse.command("init")
@_with_key_file_options
def sse_init(config_path: Path | None, key_file: Path | None) -> None:
    """Create the key file with one new master key (mode 0600). Refused if the file exists. Back it up apart
    from the data dir: without it, encrypted objects cannot be read by anyone."""
    from tunnelmesh.store.sse import new_ring, write_key_file

    try:
        path = _key_file(config_path, key_file)
        ring = new_ring()
        write_key_file(path, ring, replace=False)
    except ConfigError as e:
        click.echo(f"tunnelmesh: {e}", err=True)
        sys.exit(2)
    except FileExistsError:
        click.echo(f"tunnelmesh: {path} exists; refusing to overwrite keys (use `tunnelmesh sse rotate`)", err=True)
        sys.exit(2)
    click.echo(f"created {path} with master key {ring.active} (active); back it up apart from the data dir")


@sse.command("rotate")
@_with_key_file_options
def sse_rotate(config_path: Path | None, key_file: Path | None) -> None:
    """Add a new master key to the key file and make it the active one (an atomic replace). New versions are
    wrapped under it; older keys stay, to unwrap older ones. Restart each coordinator (all share the file)."""
    from tunnelmesh.store.sse import KeyFileError, KeyRing, new_dek, write_key_file

    try:
        path = _key_file(config_path, key_file)
        ring = KeyRing.load(path)
        kid = ring.next_kid()
        write_key_file(path, KeyRing(kid, {**ring.keys, kid: new_dek()}), replace=True)
    except (ConfigError, KeyFileError) as e:
        click.echo(f"tunnelmesh: {e}", err=True)
        sys.exit(2)
    click.echo(f"added master key {kid} to {path}, now active; restart the coordinators to use it")


@sse.command("retire")
@click.argument("kid")
@click.option("--key-file", type=click.Path(path_type=Path), required=True, help="the key file to remove KID from")
@connection
def sse_retire(c: Coordinator, kid: str, key_file: Path) -> None:
    """Remove master key KID from the key file, refused while it is the active key or any row still uses it
    (`sse status`; the sse-rewrap duty moves rows to the active key). Every coordinator sharing the metadata
    must then get the same file."""
    from tunnelmesh.store.sse import KeyFileError, KeyRing, write_key_file

    try:
        ring = KeyRing.load(key_file)
        if kid not in ring.keys:
            raise KeyFileError(f"{key_file} holds no key {kid}")
        if kid == ring.active:
            raise KeyFileError(f"{kid} is the active key; rotate first (`tunnelmesh sse rotate`)")
        rows = c.api("GET", "storage/sse")["rows"].get(kid, 0)
        if rows:
            raise KeyFileError(
                f"{rows} rows still use {kid}; wait for the sse-rewrap duty (see `tunnelmesh sse status`)"
            )
        write_key_file(key_file, KeyRing(ring.active, {k: v for k, v in ring.keys.items() if k != kid}), replace=True)
    except KeyFileError as e:
        click.echo(f"tunnelmesh: {e}", err=True)
        sys.exit(2)
    click.echo(f"removed master key {kid} from {key_file}")


@sse.command("status")
@click.option("--json", "as_json", is_flag=True)
@connection
def sse_status(c: Coordinator, as_json: bool) -> None:
    """The key ids in the coordinator's key file and how many rows (versions and uploads) each wraps."""
    d = c.api("GET", "storage/sse")
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    if not d["enabled"]:
        click.echo("server-side encryption: off (no s3.sse_key_file)")
    else:
        click.echo(f"server-side encryption: on, active key {d['active']}, keys {', '.join(d['keys'])}")
    for kid, n in sorted(d["rows"].items()):
        click.echo(f"{kid}: {n} rows{'' if kid in d['keys'] else ' (NOT IN THE KEY FILE)'}")


@cli.group()
def peer() -> None:
    """Add, list and revoke peers."""


@peer.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="the peer may also manage the coordinator")
@click.option("--json", "as_json", is_flag=True)
@connection
def peer_add(c: Coordinator, name: str, admin: bool, as_json: bool) -> None:
    """Add a peer; prints its id and token (shown only this once)."""
    p = c.api("POST", "peers", {"name": name, "admin": admin})
    if as_json:
        click.echo(json.dumps({"peer_id": p["peer_id"], "token": p["token"]}))
        return
    click.echo(
        f"peer id: {p['peer_id']}\ntoken:   {p['token']}\n"
        "The token is shown only now: it is the peer's S3 secret key (access key = peer id)."
    )


@peer.command("list")
@click.option("--json", "as_json", is_flag=True)
@connection
def peer_list(c: Coordinator, as_json: bool) -> None:
    """List peers (never their tokens)."""
    data = c.api("GET", "peers")
    emit(
        data,
        as_json,
        lambda d: [[p["id"], p["name"], p["role"], p["created"], p["revoked"] or "-"] for p in d["peers"]],
        ["id", "name", "role", "created", "revoked"],
    )


@peer.command("revoke")
@click.argument("peer_id")
@connection
def peer_revoke(c: Coordinator, peer_id: str) -> None:
    """Revoke a peer: every request it makes is refused from now on."""
    c.api("POST", f"peers/{quote(peer_id, safe='')}/revoke")
    click.echo(f"revoked {peer_id}")


# ---- key -----------------------------------------------------------------------------------


@cli.group()
def key() -> None:
    """S3 access keys apart from a peer's mesh token: scoped, expiring, revocable."""


def _seconds(value: str) -> int:
    m = _AGO.fullmatch(value.strip())
    if m is None:
        raise click.BadParameter("a duration such as 30d, 12h, 45m or 90s")
    return int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]


@key.command("create")
@click.option("--peer", "peer_id", default=None, help="whose key (default: the caller; an admin may name any peer)")
@click.option("--name", default="", help="what the key is for, shown by `key list`")
@click.option("--bucket", "buckets", multiple=True, help="limit the key to this bucket (repeatable)")
@click.option("--role", "roles", multiple=True, type=click.Choice(["read", "write", "admin"]), help="per --bucket")
@click.option("--prefix", "prefixes", multiple=True, help="per --bucket: limit the key to keys under this prefix")
@click.option("--expires", default=None, help="a duration: 30d, 12h, 45m, 90s (default: never)")
@click.option("--json", "as_json", is_flag=True)
@connection
def key_create(
    c: Coordinator,
    peer_id: str | None,
    name: str,
    buckets: tuple[str, ...],
    roles: tuple[str, ...],
    prefixes: tuple[str, ...],
    expires: str | None,
    as_json: bool,
) -> None:
    """Issue an access key with at most its peer's rights; prints its secret (shown only this once)."""
    if len(roles) not in (len(buckets), 1 if buckets else 0) or len(prefixes) not in (0, len(buckets)):
        raise CliError("give one --role (for every --bucket) or one per --bucket, and a --prefix per --bucket or none")
    doc: dict[str, Any] = {"name": name}
    if peer_id is not None:
        doc["peer"] = peer_id
    if buckets:
        role_of = roles if len(roles) == len(buckets) else roles * len(buckets)
        doc["scope"] = [
            {"bucket": b, "role": r, "prefix": prefixes[i] if prefixes else ""}
            for i, (b, r) in enumerate(zip(buckets, role_of, strict=True))
        ]
    if expires is not None:
        doc["expires_in"] = _seconds(expires)
    k = c.api("POST", "keys", doc)
    if as_json:
        click.echo(json.dumps(k))
        return
    click.echo(
        f"access key: {k['id']}\nsecret key: {k['secret']}\npeer:       {k['peer']}\n"
        f"expires:    {k['expires'] or 'never'}\n"
        "The secret is shown only now. For the AWS CLI or rclone: access key id = the access key above,\n"
        f"secret access key = the secret above, endpoint = {c.endpoint}/s3 (or the S3 listener)."
    )


@key.command("list")
@click.option("--peer", "peer_id", default=None)
@click.option("--json", "as_json", is_flag=True)
@connection
def key_list(c: Coordinator, peer_id: str | None, as_json: bool) -> None:
    """List access keys (never a secret): the caller's own, or, for an admin, every peer's."""
    data = c.api("GET", "keys", params={"peer": peer_id} if peer_id else None)

    def scope(k: dict[str, Any]) -> str:
        if k["scope"] is None:
            return "all its peer's rights"
        return ", ".join(f"{s['bucket']}/{s['prefix']}*:{s['role']}" for s in k["scope"])

    def status(k: dict[str, Any]) -> str:
        return "revoked" if k["revoked"] else "expired" if k["expired"] else "active"

    emit(
        data,
        as_json,
        lambda d: [[k["id"], k["peer"], k["name"] or "-", scope(k), k["expires"] or "never", status(k)] for k in d],
        ["id", "peer", "name", "scope", "expires", "status"],
    )


@key.command("revoke")
@click.argument("key_id")
@connection
def key_revoke(c: Coordinator, key_id: str) -> None:
    """Revoke an access key: every request signed with it is refused from now on."""
    c.api("DELETE", f"keys/{quote(key_id, safe='')}")
    click.echo(f"revoked {key_id}")


# ---- object --------------------------------------------------------------------------------


@cli.group("object")
def object_() -> None:
    """Put, get, list and delete objects."""


def _split(target: str) -> tuple[str, str]:
    b, _, k = target.partition("/")
    if not b or not k:
        raise CliError(f"expected BUCKET/KEY, got {target!r}")
    return b, k


_s3_error = s3_error
_url = object_url
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _bucket_prefix(target: str) -> tuple[str, str]:
    """BUCKET[/PREFIX] of a recursive copy; the prefix as a folder (`photos` means `photos/`)."""
    b, _, prefix = target.partition("/")
    if not b:
        raise CliError(f"expected BUCKET or BUCKET/PREFIX, got {target!r}")
    return b, prefix if not prefix or prefix.endswith("/") else prefix + "/"


@object_.command("put")
@click.argument("target")
@click.argument("source")
@click.option("-r", "--recursive", is_flag=True, help="upload every file under directory SOURCE below BUCKET/PREFIX")
@connection
def object_put(c: Coordinator, target: str, source: str, recursive: bool) -> None:
    """Upload SOURCE to BUCKET/KEY. SOURCE `-` (or /dev/stdin, a pipe) is read to its end and sent in parts
    of 16 MiB. With -r: every file under directory SOURCE, to BUCKET/PREFIX/<its relative path>."""
    if recursive:
        _put_tree(c, target, source)
        return
    b, k = _split(target)
    with Meter() as meter, open_source(source) as src:
        n = upload(c, b, k, src, meter)
    click.echo(shown(f"uploaded {source} to {b}/{k} ({n} bytes)"))


def _put_tree(c: Coordinator, target: str, source: str) -> None:
    b, prefix = _bucket_prefix(target)
    root = Path(source)
    if not root.is_dir():
        raise CliError(f"{source} is not a directory")
    skipped: list[str] = []
    files = total = 0
    with Meter() as meter:
        for path, rel in walk(root, skipped):
            with open_source(str(path)) as src:
                n = upload(c, b, prefix + rel, src, meter)
            meter.echo(f"uploaded {path} to {b}/{prefix + rel} ({n} bytes)")
            files, total = files + 1, total + n
    for path_name in skipped:
        click.echo(shown(f"tunnelmesh: skipped {path_name}: not a regular file"), err=True)
    click.echo(shown(f"uploaded {files} files ({total} bytes) from {source} to {b}/{prefix}"))


@object_.command("get")
@click.argument("source")
@click.argument("dest")
@click.option("-r", "--recursive", is_flag=True, help="download every object under BUCKET/PREFIX into directory DEST")
@connection
def object_get(c: Coordinator, source: str, dest: str, recursive: bool) -> None:
    """Download BUCKET/KEY to DEST: `-` for stdout; a regular file is replaced whole once the download is
    complete; a symlink, a device or a FIFO (/dev/stdout) is written in place. With -r: every object under
    BUCKET/PREFIX into directory DEST (a key that would leave DEST is refused)."""
    if recursive:
        _get_tree(c, source, dest)
        return
    b, k = _split(source)
    with Meter() as meter:
        n = download(c, b, k, dest, meter)
    if dest != STDIO and not same_as(dest, sys.stdout):
        click.echo(shown(f"downloaded {b}/{k} to {dest} ({n} bytes)"))


def _get_tree(c: Coordinator, source: str, dest: str) -> None:
    b, prefix = _bucket_prefix(source)
    root = Path(dest)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"{dest}: {e.strerror}") from None
    refused: list[str] = []
    files = total = 0
    with Meter() as meter:
        for o in list(_objects(c, b, prefix)):
            key = o["key"]
            if key.endswith("/") and o["size"] == 0:
                continue  # a folder marker (the console and other tools make them): nothing to write
            try:
                target = inside(root, safe_relative(key, prefix))
                n = download(c, b, key, str(target), meter, follow=False)
            except CliError as e:
                # one object that cannot be written (a name too long here, a broken transfer) costs only itself
                refused.append(e.message if key in e.message else f"{b}/{key}: {e.message}")
                continue
            meter.echo(f"downloaded {b}/{key} to {target} ({n} bytes)")
            files, total = files + 1, total + n
    for message in refused:
        click.echo(f"tunnelmesh: {shown(message)}", err=True)
    click.echo(shown(f"downloaded {files} objects ({total} bytes) from {b}/{prefix} into {dest}"))
    if refused:
        click.echo(f"tunnelmesh: {len(refused)} object{'s' if len(refused) > 1 else ''} not downloaded", err=True)
        sys.exit(1)


@object_.command("cat")
@click.argument("target")
@connection
def object_cat(c: Coordinator, target: str) -> None:
    """Write BUCKET/KEY to stdout."""
    b, k = _split(target)
    with Meter() as meter:
        download(c, b, k, STDIO, meter)


_HEAD_ERRORS = {404: "NoSuchKey: no such bucket or key", 403: "AccessDenied: Access Denied"}


@object_.command("stat")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True)
@connection
def object_stat(c: Coordinator, target: str, as_json: bool) -> None:
    """Show the size, ETag, type, modification time, version and user metadata of BUCKET/KEY."""
    b, k = _split(target)
    r = c.request("HEAD", _url(c, b, k))
    if r.status_code != 200:
        # a HEAD answer has no body to carry the S3 error
        raise CliError(_HEAD_ERRORS.get(r.status_code, f"HTTP {r.status_code}") + f" ({b}/{k})")
    h = r.headers
    d = {
        "bucket": b,
        "key": k,
        "size": int(h.get("content-length", 0)),
        "etag": h.get("etag"),
        "last_modified": h.get("last-modified"),
        "content_type": h.get("content-type"),
        "version_id": h.get("x-amz-version-id"),
        "storage_class": h.get("x-amz-storage-class", "STANDARD"),
        "metadata": {n[len("x-amz-meta-") :]: v for n, v in h.items() if n.lower().startswith("x-amz-meta-")},
    }
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    for name, value in d.items():
        if name == "metadata":
            for m, v in sorted(value.items()):
                click.echo(shown(f"{'meta.' + m + ':':<15}{v}"))
        elif value is not None:
            click.echo(shown(f"{name + ':':<15}{value}"))


def _access_key(c: Coordinator) -> str:
    """The access key id that goes with the CLI's token: its peer id (`admin` for the admin token), as
    ListBuckets names its caller in <Owner><ID>."""
    r = c.request("GET", f"{c.s3}/", params={"max-buckets": "1"})
    if r.status_code != 200:
        raise _s3_error(r)
    owner = ElementTree.fromstring(r.content).findtext(f"{_NS}Owner/{_NS}ID")
    if not owner:
        raise CliError("the coordinator did not name the token's peer (no Owner in ListBuckets)")
    return owner


@object_.command("presign")
@click.argument("target")
@click.option("--expires", default="1h", show_default=True, help="how long the URL works: 90s, 15m, 12h, 7d (at most)")
@click.option("--put", "for_put", is_flag=True, help="a URL to upload with (HTTP PUT) rather than to download")
@connection
def object_presign(c: Coordinator, target: str, expires: str, for_put: bool) -> None:
    """Print a presigned URL for BUCKET/KEY: anyone holding it can GET (or with --put, PUT) that object
    until it expires or the token that signed it is revoked. Made here, signed with the CLI's token."""
    from tunnelmesh.s3.auth.presign import encode_path, presign_v4
    from tunnelmesh.s3.auth.sigv4 import DEFAULT_REGION

    b, k = _split(target)
    seconds = _seconds(expires)
    parts = urlsplit(c.s3)
    host = parts.netloc
    if parts.port is not None and parts.port == {"http": 80, "https": 443}.get(parts.scheme):
        host = host.rsplit(":", 1)[0]  # clients send Host without the scheme's default port, and it is signed
    path = encode_path(f"{parts.path}/{b}/{k}")
    try:
        # every coordinator accepts us-east-1 beside its own region, so the URL needs no lookup of it
        query = presign_v4(
            "PUT" if for_put else "GET", host, path, [], _access_key(c), c.token, DEFAULT_REGION, seconds
        )
    except ValueError as e:
        raise CliError(f"--expires: {e}") from None
    click.echo(f"{parts.scheme}://{parts.netloc}{path}?{query}")


def _objects(c: Coordinator, bucket_name: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object of the bucket under `prefix`, in key order (ListObjectsV2, page by page)."""
    token = None
    while True:
        # encoding-type=url: a key holding control characters cannot be written plainly in XML 1.0
        params = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
        if token:
            params["continuation-token"] = token
        r = c.request("GET", _url(c, bucket_name), params=params)
        if r.status_code != 200:
            raise _s3_error(r)
        doc = ElementTree.fromstring(r.content)
        for el in doc.iter(f"{_NS}Contents"):
            yield {
                "key": unquote_plus(el.findtext(f"{_NS}Key") or ""),
                "size": int(el.findtext(f"{_NS}Size") or 0),
                "last_modified": el.findtext(f"{_NS}LastModified"),
            }
        token = doc.findtext(f"{_NS}NextContinuationToken")
        if doc.findtext(f"{_NS}IsTruncated") != "true" or not token:
            return


@object_.command("list")
@click.argument("bucket_name")
@click.option("--prefix", default="")
@click.option("--json", "as_json", is_flag=True)
@connection
def object_list(c: Coordinator, bucket_name: str, prefix: str, as_json: bool) -> None:
    """List the objects of BUCKET_NAME."""
    objects = list(_objects(c, bucket_name, prefix))
    emit(
        {"objects": objects},
        as_json,
        lambda d: [[o["key"], str(o["size"]), o["last_modified"]] for o in d["objects"]],
        ["key", "size", "last modified"],
    )


def _versions(c: Coordinator, bucket_name: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every version and delete marker of the bucket under `prefix`, by key, newest first (ListObjectVersions,
    page by page)."""
    params = {"versions": "", "prefix": prefix, "encoding-type": "url"}
    while True:
        r = c.request("GET", _url(c, bucket_name), params=params)
        if r.status_code != 200:
            raise _s3_error(r)
        doc = ElementTree.fromstring(r.content)
        for el in doc:
            if el.tag in (f"{_NS}Version", f"{_NS}DeleteMarker"):
                yield {
                    "key": unquote_plus(el.findtext(f"{_NS}Key") or ""),
                    "version_id": el.findtext(f"{_NS}VersionId"),
                    "latest": el.findtext(f"{_NS}IsLatest") == "true",
                    "delete_marker": el.tag == f"{_NS}DeleteMarker",
                    "size": int(el.findtext(f"{_NS}Size") or 0),
                    "last_modified": el.findtext(f"{_NS}LastModified"),
                }
        if doc.findtext(f"{_NS}IsTruncated") != "true":
            return
        params = {
            "versions": "",
            "prefix": prefix,
            "encoding-type": "url",
            "key-marker": unquote_plus(doc.findtext(f"{_NS}NextKeyMarker") or ""),
            "version-id-marker": doc.findtext(f"{_NS}NextVersionIdMarker") or "",
        }


@object_.command("versions")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True)
@connection
def object_versions(c: Coordinator, target: str, as_json: bool) -> None:
    """List every version and delete marker under BUCKET[/PREFIX], newest first within a key."""
    bucket_name, _, prefix = target.partition("/")
    rows = list(_versions(c, bucket_name, prefix))
    emit(
        {"versions": rows},
        as_json,
        lambda d: [
            [
                v["key"],
                v["version_id"],
                "yes" if v["latest"] else "",
                "delete marker" if v["delete_marker"] else str(v["size"]),
                v["last_modified"],
            ]
            for v in d["versions"]
        ],
        ["key", "version", "current", "size", "last modified"],
    )


@object_.command("restore")
@click.argument("target")
@click.option("--version", "version_id", help="the version to bring back (default: undo the delete)")
@connection
def object_restore(c: Coordinator, target: str, version_id: str | None) -> None:
    """Bring BUCKET/KEY back. Without --version, undo its delete: remove the delete markers above its newest
    version, which becomes current again. With --version, copy that version onto the key as a new current
    version (every version stays)."""
    b, k = _split(target)
    if version_id is not None:
        source = f"/{quote(b, safe='')}/{quote(k, safe='/')}?versionId={quote(version_id, safe='')}"
        r = c.request("PUT", _url(c, b, k), headers={"x-amz-copy-source": source})
        if r.status_code != 200:
            raise _s3_error(r)
        new = r.headers.get("x-amz-version-id", "null")
        click.echo(shown(f"restored {b}/{k} from version {version_id} (now current as version {new})"))
        return
    markers: list[str] = []
    found = False
    for v in _versions(c, b, k):  # the key's versions come first (every other key listed sorts after it)
        if v["key"] != k or not v["delete_marker"]:
            found = v["key"] == k
            break
        markers.append(v["version_id"])
    if not found:
        raise CliError(f"{b}/{k} has no version to bring back")
    if not markers:
        raise CliError(f"{b}/{k} is not deleted; give --version to bring back an older version")
    for m in markers:
        r = c.request("DELETE", _url(c, b, k), params={"versionId": m})
        if r.status_code not in (200, 204):
            raise _s3_error(r)
    click.echo(shown(f"restored {b}/{k} (removed {len(markers)} delete marker{'s' if len(markers) > 1 else ''})"))


@object_.command("delete")
@click.argument("target")
@connection
def object_delete(c: Coordinator, target: str) -> None:
    """Delete BUCKET/KEY."""
    b, k = _split(target)
    r = c.request("DELETE", _url(c, b, k))
    if r.status_code not in (200, 204):
        raise _s3_error(r)
    click.echo(shown(f"deleted {b}/{k}"))


# ---- network and shares ---------------------------------------------------------------------


@cli.group()
def network() -> None:
    """Show and change the network configuration."""


@network.command("show")
@click.option("--json", "as_json", is_flag=True)
@connection
def network_show(c: Coordinator, as_json: bool) -> None:
    """Show the network configuration."""
    data = c.api("GET", "network")

    def rows(d: dict[str, Any]) -> list[list[str]]:
        fixed = [[k, "" if d[k] is None else str(d[k])] for k in d if k != "extra"]
        return fixed + [[f"extra.{k}", str(v)] for k, v in sorted(d["extra"].items())]

    emit(data, as_json, rows, ["key", "value"])


@network.command("set")
@click.argument("key")
@click.argument("value")
@connection
def network_set(c: Coordinator, key: str, value: str) -> None:
    """Set KEY (mesh_name, cidr, coordinator_ip, dns_name, default_bucket_access, default_public_access_block
    or extra.NAME) to VALUE."""
    c.api("PUT", "network", {"key": key, "value": value})
    click.echo(f"{key} = {value}")


# ---- groups and audit ----------------------------------------------------------------------


@cli.group()
def group() -> None:
    """Groups of peers, to grant buckets to (`peers` is every peer, built in)."""


@group.command("create")
@click.argument("name")
@connection
def group_create(c: Coordinator, name: str) -> None:
    """Create group NAME (a-z 0-9 . _ -, up to 63)."""
    c.api("POST", "groups", {"name": name})
    click.echo(f"created group {name}")


@group.command("delete")
@click.argument("name")
@connection
def group_delete(c: Coordinator, name: str) -> None:
    """Delete group NAME; grants to it stay but match nobody."""
    c.api("DELETE", f"groups/{quote(name, safe='')}")
    click.echo(f"deleted group {name}")


@group.command("add")
@click.argument("name")
@click.argument("peer_id")
@connection
def group_add(c: Coordinator, name: str, peer_id: str) -> None:
    """Add peer PEER_ID to group NAME."""
    c.api("POST", f"groups/{quote(name, safe='')}/members/{quote(peer_id, safe='')}")
    click.echo(f"added {peer_id} to {name}")


@group.command("remove")
@click.argument("name")
@click.argument("peer_id")
@connection
def group_remove(c: Coordinator, name: str, peer_id: str) -> None:
    """Remove peer PEER_ID from group NAME."""
    c.api("DELETE", f"groups/{quote(name, safe='')}/members/{quote(peer_id, safe='')}")
    click.echo(f"removed {peer_id} from {name}")


@group.command("list")
@click.option("--json", "as_json", is_flag=True)
@connection
def group_list(c: Coordinator, as_json: bool) -> None:
    """List groups and their members."""
    data = c.api("GET", "groups")
    emit(
        data,
        as_json,
        lambda d: [[g["name"], ",".join(g["members"]) or "-", g["created"], g["by"]] for g in d["groups"]],
        ["name", "members", "created", "by"],
    )


_AGO = re.compile(r"(\d+)([smhd])")


def _when(value: str | None) -> str | None:
    """`7d`, `12h`, `30m`, `90s` ago as epoch seconds; anything else (an ISO time, epoch seconds) as given."""
    if value is None:
        return None
    m = _AGO.fullmatch(value.strip())
    if m is None:
        return value
    return str(time.time() - int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]])


@cli.command()
@click.option("--since", default=None, help="7d, 12h, 30m, or an ISO time (2026-11-30T19:00:00Z)")
@click.option("--until", default=None, help="the same forms")
@click.option("--bucket", default=None)
@click.option("--actor", default=None, help="a peer id")
@click.option("--event", default=None, help="e.g. grant.add, or grant for every grant.* event")
@click.option("--limit", type=int, default=None, help="at most this many records (default 1000)")
@click.option("--json", "as_json", is_flag=True)
@connection
def audit(
    c: Coordinator,
    since: str | None,
    until: str | None,
    bucket: str | None,
    actor: str | None,
    event: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Show the audit trail of access changes (grants, groups, defaults, peers), oldest first."""
    params = {"since": _when(since), "until": _when(until), "bucket": bucket, "actor": actor, "event": event}
    params["limit"] = None if limit is None else str(limit)
    data = c.api("GET", "audit", params={k: v for k, v in params.items() if v is not None})
    emit(
        data,
        as_json,
        lambda d: [
            [r["at"], r["event"], r["actor"], r["via"], r["bucket"] or "-", json.dumps(r["detail"], sort_keys=True)]
            for r in d["records"]
        ],
        ["at", "event", "actor", "via", "bucket", "detail"],
    )
    if data.get("truncated") and not as_json:
        click.echo("(more records match: narrow the range or raise --limit)", err=True)


@cli.group()
def share() -> None:
    """Add, list and remove NFS shares."""


@share.command("add")
@click.argument("name")
@click.option("--bucket", "bucket_name", required=True)
@click.option("--path", default="", help="the folder within the bucket")
@click.option("--peer", "peers", multiple=True, help="a peer id allowed to mount it (repeatable)")
@click.option("--read-only", is_flag=True)
@connection
def share_add(c: Coordinator, name: str, bucket_name: str, path: str, peers: tuple[str, ...], read_only: bool) -> None:
    """Add (or replace) share NAME."""
    c.api(
        "POST",
        "shares",
        {"name": name, "bucket": bucket_name, "path": path, "peers": list(peers), "read_only": read_only},
    )
    click.echo(f"added share {name}")


@share.command("list")
@click.option("--json", "as_json", is_flag=True)
@connection
def share_list(c: Coordinator, as_json: bool) -> None:
    """List shares."""
    emit(
        c.api("GET", "shares"),
        as_json,
        lambda d: [
            [s["name"], s["bucket"], s["path"] or "/", ",".join(s["peers"]) or "-", "yes" if s["read_only"] else "no"]
            for s in d["shares"]
        ],
        ["name", "bucket", "path", "peers", "read only"],
    )


@share.command("remove")
@click.argument("name")
@connection
def share_remove(c: Coordinator, name: str) -> None:
    """Remove share NAME."""
    c.api("DELETE", f"shares/{quote(name, safe='')}")
    click.echo(f"removed share {name}")


# ---- system --------------------------------------------------------------------------------


@cli.group()
def system() -> None:
    """Back up and restore the coordinator's state (the _tunnelmesh bucket)."""


@system.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@connection
def system_backup(c: Coordinator, file: Path) -> None:
    """Write the whole _tunnelmesh bucket to FILE (tar.gz with a checksummed manifest)."""
    data = c.api("GET", "system/backup")
    tmp = file.with_name(f".{file.name}.part")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o600)  # it holds the peers' tokens
    os.replace(tmp, file)
    click.echo(f"backed up the coordinator's state to {file} ({len(data)} bytes)")


@system.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@connection
def system_restore(c: Coordinator, file: Path) -> None:
    """Restore the _tunnelmesh bucket from FILE; nothing changes unless every checksum matches."""
    with file.open("rb") as f:
        res = c.api("POST", "system/restore", data=f)
    click.echo(f"restored {res['restored']} records from {file}")


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("tunnelmesh: interrupted", err=True)
        sys.exit(130)
    except Exception as e:
        click.echo(f"tunnelmesh: unexpected error: {e.__class__.__name__}: {e}", err=True)
        sys.exit(1)
