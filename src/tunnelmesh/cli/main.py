"""The `tunnelmesh` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tunnelmesh import __version__
from tunnelmesh.config import ConfigError


@click.group()
@click.version_option(__version__, prog_name="tunnelmesh")
def cli() -> None:
    """tunnelmesh: mesh-network coordinator and its S3 object store."""


@cli.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="coordinator.yaml (all keys optional; embedded defaults otherwise)",
)
@click.option("--allow-public", is_flag=True, help="allow binding a wildcard or public address")
def coordinator(config_path: Path | None, allow_public: bool) -> None:
    """Run the coordinator and its S3 API."""
    from tunnelmesh import config, server

    try:
        settings = config.load(config_path, allow_public=allow_public)
        server.configure_logging(settings.log_level)
        code = server.run(settings)
    except ConfigError as e:
        click.echo(f"tunnelmesh: configuration error: {e}", err=True)
        sys.exit(2)
    sys.exit(code)


def main() -> None:
    cli()
