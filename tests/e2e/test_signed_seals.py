"""Signed month seals as an operator and a customer meet them: `tally seal keygen` (a key
file, the public key published), `tally seal sign` for a month sealed before the key,
the close signing its own seal, the signature on the invoice in every format and checked
with the public key alone, rotation keeping old seals verifiable, and clear refusals."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from support.cli import env_for, tally, xadd_like_an_integration
from support.close_support import license_day
from support.ledger_support import api
from support.seal_support import signature_snippet
from tally.config import Settings
from tally.domain.seal_signature import signed_bytes

SEP, OCT = "2026-09", "2026-10"


async def month(settings: Settings, period: str, env: dict[str, str]) -> dict[str, object]:
    """Usage of acme in ``period``, metered and closed; its invoice's JSON."""
    day = f"{period}-02"
    for payload in (
        license_day(f"lic-{period}", "gc2", "named", 1, org="acme", day=day),
        api(f"r-{period}", count=200_000, time=f"{period}-15T12:00:00Z"),
    ):
        await xadd_like_an_integration(settings, payload)
    assert (await tally(settings, "consume", "--until-idle")).code == 0
    closed = await tally(
        settings, "close", "--period", period, "--as-of", "2026-11-02T00:00:00Z", env=env
    )
    assert closed.code == 0, closed
    shown = await tally(
        settings, "invoice", "show", "--org", "acme", "--period", period, "--format", "json"
    )
    document: dict[str, object] = shown.json()
    return document


def checks(document: dict[str, object], public_hex: str) -> bool:
    seal, signed = document["seal"], document["seal_signature"]
    assert isinstance(seal, dict) and isinstance(signed, dict)
    message = signed_bytes(document["period"], seal["sequence"], seal["root"], seal["entries"])  # type: ignore[arg-type]
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
            bytes.fromhex(signed["signature"]), message
        )
    except Exception:
        return False
    return True


async def test_seals_are_signed_and_stay_verifiable_across_a_key_rotation(
    settings: Settings, tmp_path: Path
) -> None:
    assert (await tally(settings, "migrate")).code == 0
    assert (await tally(settings, "org", "add", "acme", "--currency", "USD")).code == 0
    plain_env = env_for(settings)
    september = await month(settings, SEP, plain_env)
    assert september["seal"] and september["seal_signature"] is None  # no key yet

    key_file = tmp_path / "seal.pem"
    keyed = plain_env | {"TALLY_SEAL_KEY_FILE": str(key_file)}
    nowhere = await tally(settings, "seal", "keygen")
    assert nowhere.code == 2 and "--out FILE or set TALLY_SEAL_KEY_FILE" in nowhere.said
    unsigned_yet = await tally(settings, "seal", "sign", env=keyed)
    assert unsigned_yet.code == 1 and "cannot be read" in unsigned_yet.said

    made = await tally(settings, "seal", "keygen", env=keyed)
    assert made.code == 0, made
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" in key_file.read_bytes()
    (first,) = (await tally(settings, "seal", "keys", "--format", "json")).json()
    assert first["key_id"] in made.said and first["valid_until"] is None
    signed = await tally(settings, "seal", "sign", env=keyed)
    assert signed.code == 0 and f"signed seal 1 of {SEP}" in signed.said, signed

    september = (
        await tally(
            settings, "invoice", "show", "--org", "acme", "--period", SEP, "--format", "json"
        )
    ).json()
    signature = september["seal_signature"]
    assert signature["key_id"] == first["key_id"] and signature["algorithm"] == "Ed25519"
    assert signature["keys"] == "/.well-known/tally-seal-keys.json"
    assert checks(september, first["public_key"])
    as_csv = await tally(settings, "invoice", "show", "--org", "acme", "--period", SEP,
                         "--format", "csv")  # fmt: skip
    seal_row = list(csv.DictReader(io.StringIO(as_csv.stdout)))[-1]
    assert signature["signature"] in seal_row["description"]
    assert first["key_id"] in seal_row["description"]
    as_html = await tally(settings, "invoice", "show", "--org", "acme", "--period", SEP,
                          "--format", "html")  # fmt: skip
    assert signature["signature"] in as_html.stdout

    old_pem = key_file.read_bytes()
    again = await tally(settings, "seal", "keygen", env=keyed)
    assert again.code == 2 and "--rotate" in again.said and key_file.read_bytes() == old_pem
    leftover = key_file.with_name(key_file.name + ".new")  # a keygen that stopped halfway
    leftover.write_bytes(b"a private key that may be published")
    stopped = await tally(settings, "seal", "keygen", "--rotate", env=keyed)
    assert stopped.code == 2 and "may have published its key" in stopped.said, stopped
    assert leftover.read_bytes() == b"a private key that may be published"  # never deleted
    leftover.unlink()
    rotated = await tally(settings, "seal", "keygen", "--rotate", env=keyed)
    assert rotated.code == 0, rotated
    assert key_file.read_bytes() != old_pem
    october = await month(settings, OCT, keyed)  # the close signs its own seal
    old, new = (await tally(settings, "seal", "keys", "--format", "json")).json()
    assert old["key_id"] == first["key_id"] and old["valid_until"] == new["valid_from"]
    assert october["seal_signature"]["key_id"] == new["key_id"]  # type: ignore[index]
    assert checks(october, new["public_key"]) and not checks(october, old["public_key"])
    assert checks(september, old["public_key"])  # the retired key's seal still checks
    exec(signature_snippet(), {"invoice": september, "key": old})  # the docs' check passes
    with pytest.raises(InvalidSignature):
        exec(signature_snippet(), {"invoice": september, "key": new})

    retired_file = tmp_path / "retired.pem"
    retired_file.write_bytes(old_pem)
    retired = await tally(
        settings, "seal", "sign", env=plain_env | {"TALLY_SEAL_PRIVATE_KEY": old_pem.decode()}
    )
    assert retired.code == 1 and "not the current one" in retired.said, retired
    garbage = await tally(
        settings, "close", "--period", OCT, env=plain_env | {"TALLY_SEAL_PRIVATE_KEY": "nope"}
    )
    assert garbage.code == 1 and "TALLY_SEAL_PRIVATE_KEY is not" in garbage.said

    statement = tmp_path / "acme-sep.jsonl"
    exported = await tally(
        settings, "statement", "export", "--org", "acme", "--period", SEP, "--out", str(statement)
    )
    assert exported.code == 0 and "lines in" in exported.said, exported
    to_stdout = await tally(settings, "statement", "export", "--org", "acme", "--period", SEP)
    assert to_stdout.stdout == statement.read_text()
    keys_json = tmp_path / "keys.json"
    keys_json.write_text(json.dumps({"keys": [old, new]}))
    verified = await tally(
        settings, "statement", "verify", str(statement), "--keys", str(keys_json)
    )
    assert verified.code == 0 and "checks" in verified.said, verified
    keys_json.write_text(json.dumps({"keys": [new]}))  # not the key that signed September
    unpublished = await tally(
        settings, "statement", "verify", str(statement), "--keys", str(keys_json)
    )
    assert unpublished.code == 1 and "is not a published key" in unpublished.said, unpublished
    bad_keys = await tally(
        settings, "statement", "verify", str(statement), "--keys", str(statement)
    )
    assert bad_keys.code == 2 and "not the published keys' document" in bad_keys.said
    forged = tmp_path / "forged.jsonl"
    forged.write_text(statement.read_text().replace(september["seal_signature"]["signature"],  # type: ignore[index]
                                                    "00" * 64))  # fmt: skip
    keys_json.write_text(json.dumps({"keys": [old, new]}))
    keyed = ("--keys", str(keys_json))
    refused = await tally(settings, "statement", "verify", str(forged), *keyed)
    assert refused.code == 1 and "signature does not verify" in refused.said, refused
    unkeyed = await tally(settings, "statement", "verify", str(statement))
    assert unkeyed.code == 2 and "--keys" in unkeyed.said  # its own keys prove nothing
    nothing = await tally(settings, "statement", "verify", str(tmp_path / "none.jsonl"), *keyed)
    assert nothing.code == 2 and "cannot read" in nothing.said
    not_one = await tally(settings, "statement", "verify", str(key_file), *keyed)
    assert not_one.code == 2 and "is not a statement" in not_one.said
    unclosed = await tally(
        settings, "statement", "export", "--org", "acme", "--period", "2026-11", "--out",
        str(tmp_path / "nov.jsonl"),
    )  # fmt: skip
    assert unclosed.code == 1 and "no invoice for 2026-11" in unclosed.said
    assert not (tmp_path / "nov.jsonl").exists()
