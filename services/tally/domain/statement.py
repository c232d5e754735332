"""A customer's statement of one sealed month, and checking one offline. Pure.

A statement is JSON Lines (format ``tally-statement-v1``), one object a line, by ``type``:

- ``header`` (first): the organization, period, invoice and currency, and every seal of
  the period (sequence, root, entries, sealed_at, and its ``signature``: algorithm, key
  id, signature, the public key and its validity; null while unsigned), and where the
  published keys are;
- ``entry``: a usage entry of the organization in a seal, with every field its hash
  covers (``tally.domain.ledger.chain_hash``: prev hash, lane, seq, posted_at, key, kind,
  org, period, rate card version, lines as (account code, amount)), its ``hash`` (the
  seal's leaf), the seal it is in and the invoice that bills it (``adjusts``: set when an
  adjustment of that earlier invoice does);
- ``event``: each event the entry before it carries (source, id, status, meter, feature,
  quantity, its raw bytes in base64 and their SHA-256), with the entry's ``leaf`` and the
  Merkle inclusion ``proof`` of that leaf in its seal (index, siblings from the leaf up);
  the organization's events of the month that no entry carries (not billable, license
  reports) follow the entries, without a proof;
- ``trailer`` (last): the invoice's lines, adjustments and total, the rate card that
  priced it, and the counts of entries and events listed.

``check`` verifies a statement line by line in memory independent of its length (one
entry's events at a time): every raw hash, every entry hash from its fields and its
events, every proof against its seal's root, every seal's signature, and that the
events an invoice line bills add up to the line under the rate card (API requests: their
count; AI tokens: each feature's quantity converted as ``RateCard.tokens`` does), with
its overage and amount priced as the close prices them (``price_meter``). A usage
reversal (``kind`` usage_reversal) carries the event a void took back: its units count
negatively, so the line adds up to the usage not voided. A line's
allocation comes from the license reports and commitments of the close, so it is taken
as the invoice states it; the line of purchased tokens bills no events.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tally.domain import merkle, seal_signature
from tally.domain.allocation import price_meter
from tally.domain.invoicing import PURCHASED
from tally.domain.ledger import Entry, chain_hash, events_digest
from tally.domain.ratecard import RateCard

FORMAT = "tally-statement-v1"
MEDIA_TYPE = "application/jsonl"


class BadStatement(ValueError):
    """A statement that cannot be read at all (not JSON Lines, no header, no trailer)."""


def proof_of(proof: merkle.Proof) -> dict[str, Any]:
    """An event line's ``proof``: the leaf's place and its siblings from the leaf up."""
    return {
        "index": proof.index,
        "siblings": [{"side": s.side, "hash": s.hash.hex()} for s in proof.siblings],
    }


def _folds_to(leaf: bytes, proof: dict[str, Any], root: bytes, size: int) -> bool:
    """The proof leads to the root from its own place: its siblings' sides are those of
    leaf ``index`` of a tree of ``size`` (the seal's signed entry count)."""
    siblings = tuple(
        merkle.Sibling(step["side"], bytes.fromhex(step["hash"])) for step in proof["siblings"]
    )
    index = proof["index"]
    if not (isinstance(index, int) and 0 <= index < size):
        return False
    if [step.side for step in siblings] != merkle.sides(index, size):
        return False
    return merkle.verify_proof(merkle.Proof(leaf, index, size, siblings, root))


def _entry_hash(entry: dict[str, Any], carried: list[tuple[str, str, bytes]]) -> bytes:
    fields = Entry(
        entry["key"],
        entry["kind"],
        entry["org"],
        entry["period"],
        entry["rate_card_version"],
        (),
    )
    return chain_hash(
        bytes.fromhex(entry["prev_hash"]),
        entry["lane"],
        entry["seq"],
        datetime.fromisoformat(entry["posted_at"]),
        fields,
        [(code, Decimal(amount)) for code, amount in entry["lines"]],
        events_digest(carried),
    )


def _stated(raw: bytes) -> tuple[str, str | None, Decimal] | None:
    """What an event's own bytes state it counts: (meter, AI feature, units). Never the
    line's labels, which no hash covers."""
    event = json.loads(raw, parse_float=Decimal)
    data = event.get("data") or {}
    if event.get("type") == "api.request":
        return "api_request", None, Decimal(data.get("count", 1))
    if event.get("type") == "ai.usage":
        return "ai_token", str(data["feature"]), Decimal(str(data["quantity"]))
    return None


@dataclass
class _Check:
    header: dict[str, Any]
    published: frozenset[str]  # the public keys (hex) Tally publishes
    findings: list[str] = field(default_factory=list)
    roots: dict[int, bytes] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)  # each seal's signed entry count
    places: set[tuple[int, int]] = field(default_factory=set)  # (seal, leaf index) proven
    entry_ids: set[Any] = field(default_factory=set)
    place: tuple[int, int] | None = None  # the current entry's (seal, leaf index)
    entry: dict[str, Any] | None = None
    carried: list[tuple[str, str, bytes]] = field(default_factory=list)
    api: Decimal = Decimal(0)
    ai: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    entries: int = 0
    events: int = 0

    def seals(self) -> None:
        for seal in self.header["seals"]:
            where = f"seal {seal['sequence']} of {self.header['period']}"
            self.roots[seal["sequence"]] = bytes.fromhex(seal["root"])
            self.sizes[seal["sequence"]] = int(seal["entries"])
            signed = seal["signature"]
            if signed is None:
                self.findings.append(f"{where} is not signed")
                continue
            public = bytes.fromhex(signed["public_key"])
            message = seal_signature.signed_bytes(
                self.header["period"], seal["sequence"], seal["root"], seal["entries"]
            )
            # the key must be one Tally published: a key the statement brings proves nothing
            if signed["public_key"] not in self.published:
                self.findings.append(f"{where}: key {signed['key_id']} is not a published key")
            if seal_signature.key_id(public) != signed["key_id"]:
                self.findings.append(f"{where}: the public key is not key {signed['key_id']}")
            elif not seal_signature.verify(public, bytes.fromhex(signed["signature"]), message):
                self.findings.append(f"{where}: its signature does not verify")

    def close_entry(self) -> None:
        """The entry before: its hash, from its fields and the events listed under it."""
        if (
            self.entry is not None
            and _entry_hash(self.entry, self.carried).hex() != self.entry["hash"]
        ):
            self.findings.append(
                f"entry {self.entry['id']}: its fields and events do not hash to its leaf"
            )
        self.entry, self.carried = None, []

    def add_entry(self, line: dict[str, Any]) -> None:
        self.close_entry()
        self.entry = line
        self.entries += 1
        where = f"entry {line['id']}"
        if (line["org"], line["period"]) != (self.header["org"], self.header["period"]):
            self.findings.append(
                f"{where} is {line['org']}'s of {line['period']}, not the statement's "
                f"{self.header['org']}'s of {self.header['period']}"
            )
        if line["id"] in self.entry_ids:
            self.findings.append(f"{where} is listed twice")
        self.entry_ids.add(line["id"])

    def add_event(self, line: dict[str, Any]) -> None:
        self.events += 1
        where = f"event {line['source']}/{line['id']}"
        raw = base64.b64decode(line["raw"], validate=True)
        if hashlib.sha256(raw).hexdigest() != line["raw_sha256"]:
            self.findings.append(f"{where}: its raw bytes do not hash to raw_sha256")
        if line["entry"] is None:  # not billable, a license report, a correction: no entry
            return
        entry = self.entry
        if entry is None or line["entry"] != entry["id"] or line["leaf"] != entry["hash"]:
            self.findings.append(f"{where}: not under the entry that carries it")
            return
        self.carried.append((line["source"], line["id"], bytes.fromhex(line["raw_sha256"])))
        root, size = self.roots.get(entry["seal"]), self.sizes.get(entry["seal"], 0)
        proof = line["proof"]
        if root is None or not _folds_to(bytes.fromhex(line["leaf"]), proof, root, size):
            self.findings.append(f"{where}: its proof does not lead to seal {entry['seal']}'s root")
        place = (entry["seal"], proof["index"])
        if len(self.carried) == 1:  # the entry's first event: its leaf's place, once a statement
            if place in self.places:
                self.findings.append(f"{where}: its entry's leaf is listed twice")
            self.places.add(place)
            self.place = place
        elif place != self.place:
            self.findings.append(f"{where}: not at its entry's place in the seal")
        stated = _stated(raw)
        if stated is None or (stated[0], stated[1], stated[2]) != (
            line["meter"],
            line["feature"],
            Decimal(line["quantity"]),
        ):
            self.findings.append(f"{where}: its meter, feature or quantity is not its bytes'")
        if stated is None:
            return
        meter, feature, units = stated  # the bytes, never the labels, are added up
        if entry["kind"] == "usage_reversal":  # a void takes its event back (kind is hashed)
            units = -units
        if entry["invoice"] == self.header["invoice"] and entry["adjusts"] is None:
            if meter == "api_request":
                self.api += units
            else:
                self.ai[feature or ""] += units

    def totals(self, trailer: dict[str, Any]) -> None:
        self.close_entry()
        if (trailer["entries"], trailer["events"]) != (self.entries, self.events):
            self.findings.append(
                f"the trailer counts {trailer['entries']} entries and {trailer['events']} "
                f"events, the statement lists {self.entries} and {self.events}"
            )
        card = RateCard.model_validate(trailer["rate_card"])
        currency = self.header["currency"]
        used = {
            "api_requests": (self.api, card.api.price[currency], "none"),
            "ai_tokens": (
                sum((card.tokens(f, q) for f, q in self.ai.items()), Decimal(0)),
                card.ai.price[currency],
                card.ai.overage_whole_tokens,
            ),
        }
        amounts = Decimal(0)
        for line in trailer["lines"]:
            amounts += Decimal(line["amount"])
            if line["meter"] == PURCHASED:
                continue  # tokens bought, not used: no event bills them
            units, price, whole = used[line["meter"]]
            priced = price_meter(
                Decimal(line["allocation"]), units, price, card.currencies[currency], whole
            )
            stated = tuple(Decimal(line[k]) for k in ("used", "overage", "unit_price", "amount"))
            if stated != (priced.used, priced.overage, priced.unit_price, priced.amount):
                self.findings.append(
                    f"line {line['meter']}: the events add up to {priced.used} used, "
                    f"{priced.overage} overage, {priced.amount} {currency} at {price}; the "
                    f"invoice says {stated[0]}, {stated[1]}, {stated[3]} at {stated[2]}"
                )
        amounts += sum((Decimal(a["amount"]) for a in trailer["adjustments"]), Decimal(0))
        if amounts != Decimal(trailer["total"]):
            self.findings.append(f"the lines add up to {amounts}, the total is {trailer['total']}")


def published_keys(document: bytes) -> frozenset[str]:
    """The public keys (hex) of a saved ``/.well-known/tally-seal-keys.json``."""
    try:
        return frozenset(key["public_key"] for key in json.loads(document)["keys"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BadStatement(f"not the published keys' document ({exc!r})") from exc


def check(lines: Iterable[bytes], published: frozenset[str]) -> list[str]:
    """What is wrong with a statement, named (empty: it checks); ``BadStatement`` when it
    cannot be read as one. ``published``: the public keys the seals must be signed by,
    from Tally's published document saved by the customer (never the statement's own)."""
    state: _Check | None = None
    trailer = None
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        if trailer is not None:
            raise BadStatement(f"line {number}: the statement goes on after its trailer")
        try:
            line = json.loads(text)
            kind = line["type"]
            if state is None:
                if kind != "header" or line.get("format") != FORMAT:
                    raise BadStatement(f"line {number}: not a {FORMAT} header")
                state = _Check(line, published)
                state.seals()
            elif kind == "entry":
                state.add_entry(line)
            elif kind == "event":
                state.add_event(line)
            elif kind == "trailer":
                trailer = line
                state.totals(line)
            else:
                raise BadStatement(f"line {number}: unknown type {kind!r}")
        except BadStatement:
            raise
        except (ValueError, KeyError, TypeError, InvalidOperation, binascii.Error) as exc:
            raise BadStatement(f"line {number}: not a statement line ({exc!r})") from exc
    if state is None or trailer is None:
        raise BadStatement("the statement ends before its " + ("trailer" if state else "header"))
    return state.findings
