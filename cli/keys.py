"""``jit keys``: the access-token signing keys of a key directory (a mounted secret), for rotation.

Runs locally, on the directory the API reads through ``JIT_SIGNING_KEYS_PATH``
(or its data dir's ``signing-keys/``); it calls no server. The rotation, with
no token ever failing to verify (README, "Signing keys"):

    jit keys new DIR --alg RS256        1. publish: the API serves it in its JWKS, the old key still signs
                                           (JIT_SIGNING_KEY_ID=<old kid>, or the old key's algorithm)
    (wait the JWKS cache lifetime: 5 minutes; restart the APIs with JIT_SIGNING_KEY_ID=<new kid>)
                                        2. sign with the new key
    (wait the longest token lifetime: JIT_TOKEN_TTL_S, 5 minutes)
    jit keys remove DIR OLD_KID         3. retire the old key
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from cli.client import FAILED, USAGE, CliError
from core.keys import ALGORITHMS, KeyRing, SigningKey, SigningKeyError, generate, write_key
from core.private_files import private_dir

DIRECTORY = click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
# Which key signs, by the API's own rule: JIT_SIGNING_KEY_ID, else the newest of JIT_TOKEN_ALGORITHM.
SIGNING = click.option(
    "--signing", metavar="KID", envvar="JIT_SIGNING_KEY_ID", help="The kid that signs [env: JIT_SIGNING_KEY_ID]."
)
ALGORITHM = click.option(
    "--alg",
    type=click.Choice(ALGORITHMS),
    envvar="JIT_TOKEN_ALGORITHM",
    default="RS256",
    show_default=True,
    help="Else the newest key of this algorithm signs [env: JIT_TOKEN_ALGORITHM].",
)


@click.group()
def keys() -> None:
    """Signing keys for access tokens: create, list, publish, retire (runs locally)."""


def _ring(directory: Path, signing: str | None, alg: str) -> KeyRing:
    try:
        return KeyRing.from_directory(directory, active_kid=signing, algorithm=alg)  # type: ignore[arg-type]
    except SigningKeyError as e:
        raise CliError(str(e), USAGE) from e


@keys.command("new")
@DIRECTORY
@click.option("--alg", type=click.Choice(ALGORITHMS), default="RS256", show_default=True)
def new(directory: Path, alg: str) -> None:
    """Add a key to DIRECTORY (published at once; it signs only once chosen)."""
    private_dir(directory)
    key = SigningKey.of(generate(alg))  # type: ignore[arg-type]
    path = write_key(directory, key)
    click.echo(f"{key.kid}  {key.alg}  {path}")
    click.echo(f"sign with it once every JWKS cache has it (5 minutes): JIT_SIGNING_KEY_ID={key.kid}", err=True)


@keys.command("list")
@DIRECTORY
@SIGNING
@ALGORITHM
def list_keys(directory: Path, signing: str | None, alg: str) -> None:
    """The keys of DIRECTORY, oldest first: kid, algorithm, created, and which one signs."""
    ring = _ring(directory, signing, alg)
    files = {f.stem.split("-", 1)[1]: f for f in directory.glob("*.pem") if "-" in f.stem}
    click.echo(f"{'KID':<44}  {'ALG':<5}  {'CREATED':<20}  SIGNS")
    for key in ring.keys:
        f = files.get(key.kid)
        created = "-"
        if f is not None and f.stem.split("-", 1)[0].isdigit():
            created = datetime.fromtimestamp(int(f.stem.split("-", 1)[0]) / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{key.kid:<44}  {key.alg:<5}  {created:<20}  {'yes' if key is ring.active else ''}")


@keys.command("jwks")
@DIRECTORY
@SIGNING
@ALGORITHM
def jwks(directory: Path, signing: str | None, alg: str) -> None:
    """The JWKS the API would publish from DIRECTORY (public keys only), the signing key first."""
    click.echo(json.dumps(_ring(directory, signing, alg).jwks(), indent=2))


@keys.command("remove")
@DIRECTORY
@click.argument("kid")
def remove(directory: Path, kid: str) -> None:
    """Retire KID: its file is deleted (tokens it signed stop verifying once the APIs restart)."""
    found = [f for f in directory.glob("*.pem") if f.stem.endswith(f"-{kid}")]
    if not found:
        raise CliError(f"no key {kid} in {directory}", FAILED)
    if len(list(directory.glob("*.pem"))) == 1:
        raise CliError("that is the last key: add its successor first (jit keys new)", FAILED)
    for f in found:
        f.unlink()
    click.echo(f"removed {kid}")
