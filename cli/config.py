"""Where ``jit`` finds its server, and ``jit config``: a small TOML file of the user's own.

The server is the first of: ``--server URL``, ``JIT_SERVER``, ``server`` in the
config file, ``http://127.0.0.1:8000`` (``make run``'s API).

The file is ``$XDG_CONFIG_HOME/jit/config.toml`` (else ``~/.config/jit/config.toml``),
one ``key = "value"`` a line, read with tomllib and written by the few lines
below (the values are strings; JSON's string escapes are TOML's). Created 0600
in a 0700 directory: it says which server you trust with your identity token.
Never a token in it: tokens expire, and belong in JIT_TOKEN.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import click

from cli.client import USAGE, CliError

DEFAULT_SERVER = "http://127.0.0.1:8000"
KEYS = {"server": "the API's base URL, e.g. https://jit.example.com"}
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "jit" / "config.toml"


def read_config(path: Path | None = None) -> dict[str, Any]:
    path = path or config_path()
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as e:
        raise CliError(f"{path} is not valid TOML: {e}; fix it or remove it", USAGE) from None
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror or e}", USAGE) from None


def write_config(values: dict[str, Any], path: Path | None = None) -> Path:
    """Replace the file with ``values`` (scalars and lists): complete or not at all, 0600."""
    path = path or config_path()
    lines = ["# jit's settings (jit config set KEY VALUE; jit config show)"]
    for key, value in values.items():
        if not _BARE_KEY.fullmatch(key) or isinstance(value, dict):
            raise CliError(f"{path}: cannot rewrite {key!r} (a table or a quoted key); edit the file by hand")
        lines.append(f"{key} = {json.dumps(value)}")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    partial.unlink(missing_ok=True)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(partial, path)
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise CliError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def check_url(value: str, where: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) <= len("http://"):
        raise CliError(f"{where}: {value!r} is not an http:// or https:// URL", USAGE)
    return value.rstrip("/")


def resolve_server(option: str | None) -> tuple[str, str]:
    """The server URL and where it came from: --server, JIT_SERVER, the config file, or the default."""
    if option:
        return check_url(option, "--server"), "--server"
    env = os.environ.get("JIT_SERVER", "").strip()
    if env:
        return check_url(env, "JIT_SERVER"), "JIT_SERVER"
    path = config_path()
    configured = read_config(path).get("server")
    if configured is not None:
        if not isinstance(configured, str):
            raise CliError(f"{path}: server must be a string URL", USAGE)
        return check_url(configured, str(path)), str(path)
    return DEFAULT_SERVER, "default"


@click.group("config")
def config() -> None:
    """Your settings, in $XDG_CONFIG_HOME/jit/config.toml (~/.config/jit/config.toml).

    \b
    jit config set server https://jit.example.com
    jit config get server
    jit config show          the server jit would use now, and why
    """


_KEY = click.Choice(sorted(KEYS))


@config.command("set")
@click.argument("key", type=_KEY)
@click.argument("value")
def set_(key: str, value: str) -> None:
    """Set KEY (server: the API's base URL) to VALUE."""
    path = config_path()
    if key == "server":
        value = check_url(value, "server")
    path = write_config({**read_config(path), key: value}, path)
    click.echo(f"{key} = {value} (in {path})", err=True)


@config.command("get")
@click.argument("key", type=_KEY)
def get(key: str) -> None:
    """Print KEY as the config file has it; exit 1 if it is not set there."""
    path = config_path()
    value = read_config(path).get(key)
    if value is None:
        raise CliError(f"{key} is not set in {path}")
    click.echo(value)


@config.command("unset")
@click.argument("key", type=_KEY)
def unset(key: str) -> None:
    """Remove KEY from the config file."""
    path = config_path()
    values = read_config(path)
    if values.pop(key, None) is not None:
        write_config(values, path)


@config.command("show")
@click.pass_context
def show(ctx: click.Context) -> None:
    """The config file, and the server jit would use now with where it comes from."""
    path = config_path()
    click.echo(f"config file: {path}{'' if path.exists() else ' (none yet)'}")
    for key, value in read_config(path).items():
        click.echo(f"  {key} = {value}")
    option = ctx.find_root().params.get("server")
    server, source = resolve_server(option)
    click.echo(f"server: {server} (from {source})")
