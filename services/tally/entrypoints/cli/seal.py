"""``tally seal …``: the Ed25519 keys that sign month seals, and signing seals."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tally import bootstrap
from tally.adapters.postgres import seals
from tally.config import Settings, get_settings
from tally.domain.seal_signature import KEYS_PATH
from tally.entrypoints.cli.context import with_engine
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    check_period,
    console,
    fail,
    print_rows,
)
from tally.service_layer.seal_signing import (
    SealKeyError,
    load_private_key,
    new_key_pair,
    publish,
    sign_seals,
)

seal_app = typer.Typer(
    help="Month seals' Ed25519 signatures: make (or rotate) the key, sign seals, list keys.",
    no_args_is_help=True,
)


def signing_key(settings: Settings) -> Ed25519PrivateKey | None:
    """The configured seal key: TALLY_SEAL_PRIVATE_KEY (a deployment's secret), else the
    file TALLY_SEAL_KEY_FILE; None when neither is set."""
    if settings.seal_private_key is not None:
        pem = settings.seal_private_key.get_secret_value().encode()
        return load_private_key(pem, "TALLY_SEAL_PRIVATE_KEY")
    if settings.seal_key_file is None:
        return None
    try:
        pem = settings.seal_key_file.read_bytes()
    except OSError as exc:
        raise SealKeyError(
            f"TALLY_SEAL_KEY_FILE {settings.seal_key_file} cannot be read ({exc.strerror}): "
            "make the key with `tally seal keygen`"
        ) from exc
    return load_private_key(pem, f"TALLY_SEAL_KEY_FILE {settings.seal_key_file}")


def _write_private(path: Path, pem: bytes) -> Path:
    """Write the private key next to ``path`` (owner-only), to be renamed into place once
    its public key is published."""
    fresh = path.with_name(path.name + ".new")
    if fresh.exists():  # a keygen stopped between publishing its key and this file's rename
        raise fail(
            f"{fresh} exists: an earlier keygen may have published its key and stopped before "
            f"moving it to {path}; compare it with `tally seal keys`, then move it into place "
            "or remove it",
            2,
        )
    descriptor = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    return fresh


@seal_app.command("keygen")
def keygen(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where the private key goes; default TALLY_SEAL_KEY_FILE."),
    ] = None,
    rotate: Annotated[
        bool,
        typer.Option(help="Replace an existing key file: the old key is retired, kept public."),
    ] = False,
) -> None:
    """Make an Ed25519 key pair: the private key into a file (mode 600; never into the
    database), the public key published; the key before it is retired, its seals stay
    verifiable."""
    path = out or get_settings().seal_key_file
    if path is None:
        raise fail("where should the private key go? give --out FILE or set TALLY_SEAL_KEY_FILE", 2)
    if path.exists() and not rotate:
        raise fail(
            f"{path} exists: give --rotate to replace it (its key is retired, and the seals "
            "it signed stay verifiable by its public key)",
            2,
        )
    pair = new_key_pair()
    try:
        fresh = _write_private(path, pair.private_pem)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror}") from exc
    try:
        valid_from = with_engine(  # as the owner: tally_writer may not publish a key
            lambda engine: publish(bootstrap.seal_signing_store(engine), pair), owner=True
        )
    except BaseException:
        fresh.unlink(missing_ok=True)
        raise
    fresh.replace(path)
    console.print(
        f"seal key {pair.key_id} valid from {valid_from.isoformat()}, public key "
        f"{pair.public_key.hex()} (published at {KEYS_PATH}); private key in {path}"
    )


@seal_app.command("sign")
def sign(
    period: Annotated[
        str | None,
        typer.Option(help="Only this period's seals (YYYY-MM).", callback=check_period),
    ] = None,
) -> None:
    """Sign every seal not signed yet (seals made before a key existed, say) with the
    configured key, which must be the current one."""
    try:
        key = signing_key(get_settings())
        if key is None:
            raise SealKeyError("no seal key: set TALLY_SEAL_KEY_FILE or TALLY_SEAL_PRIVATE_KEY")
        signed = with_engine(
            lambda engine: sign_seals(bootstrap.seal_signing_store(engine), key, period)
        )
    except SealKeyError as exc:
        raise fail(str(exc)) from exc
    for seal in signed:
        console.print(f"signed seal {seal.sequence} of {seal.period} (root {seal.root})")
    console.print(f"{len(signed)} seal(s) signed")


@seal_app.command("keys")
def keys(fmt: FormatOption = Format.table) -> None:
    """Every public key that signs seals, with its validity (what the API publishes)."""
    found = with_engine(seals.seal_keys)
    print_rows([key.model_dump() for key in found], fmt, "seal keys")


def register(app: typer.Typer) -> None:
    app.add_typer(seal_app, name="seal")
