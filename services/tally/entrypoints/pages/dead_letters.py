"""Dead letters: paged and filtered, one by one with their bytes and history."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tally.adapters.postgres import reads
from tally.adapters.postgres.reads import dead_letters as dead_letter_reads
from tally.domain import bounds
from tally.domain.access import Scope
from tally.domain.pagination import BadCursor
from tally.entrypoints.http.auth import scoped
from tally.entrypoints.inputs import Id
from tally.entrypoints.pages import documents
from tally.entrypoints.pages.web import (
    PAGE_ROWS,
    NavLink,
    Refusal,
    engine,
    page,
    path_for,
    read_snapshot,
    signed_in,
)

router = APIRouter()
NAV = (NavLink("Dead letters", "dead_letters", 5),)


def letter_filters(request: Request) -> dict[str, Any]:
    """The dead-letter list's filters from the query: code, source, organization,
    state and the received range (whole UTC days, both ends included)."""
    query = request.query_params
    try:
        first = date.fromisoformat(query["from"]) if query.get("from") else None
        last = date.fromisoformat(query["to"]) if query.get("to") else None
        state = query.get("state", "open")
        if state not in ("open", "replayed", "all"):
            raise ValueError(f"state is open, replayed or all, not {state!r}")
        return {
            "code": bounds.text(query["code"]) if query.get("code") else None,
            "source": bounds.text(query["source"]) if query.get("source") else None,
            "org": bounds.text(query["org"]) if query.get("org") else None,
            "state": state,
            "first": first,
            "last": last,
        }
    except ValueError as exc:
        raise Refusal(400, "Not a filter of dead letters", str(exc)) from exc


@router.get("/dead-letters", name="dead_letters", **scoped(Scope.dlq_read))
async def dead_letters_page(request: Request) -> HTMLResponse:
    """A page of dead letters (keyset: ``after`` the previous page's cursor), filtered,
    with the open and total count of each code."""
    viewer = await signed_in(request)
    chosen = letter_filters(request)
    after = request.query_params.get("after")
    day = timedelta(days=1)
    filters = dead_letter_reads.DeadLetterFilter(
        code=chosen["code"], source=chosen["source"], org=chosen["org"],
        state=None if chosen["state"] == "all" else chosen["state"],
        since=datetime.combine(chosen["first"], time(), UTC) if chosen["first"] else None,
        before=datetime.combine(chosen["last"] + day, time(), UTC) if chosen["last"] else None,
    )  # fmt: skip
    async with read_snapshot(engine(request)) as conn:
        try:
            found = await dead_letter_reads.dead_letter_listing(filters).page(
                conn, await reads.cursors(conn), after, PAGE_ROWS
            )
        except BadCursor as exc:
            raise Refusal(400, "Not a page of dead letters", str(exc)) from exc
        codes = await dead_letter_reads.dead_letter_codes(conn)
    kept = {k: str(v) for k, v in chosen.items() if v is not None and k not in ("first", "last")}
    kept |= {"from": str(chosen["first"])} if chosen["first"] else {}
    kept |= {"to": str(chosen["last"])} if chosen["last"] else {}
    here = path_for(request, "ui:dead_letters")
    return page(
        request, "dead_letters.html", viewer, rows=found.items, chosen=chosen, codes=codes,
        filtered=any(chosen[k] for k in ("code", "source", "org", "first", "last")),
        here=here, kept=kept, after=after,
        next_page=found.next and f"{here}?" + urlencode(kept | {"after": found.next}),
        active="dead_letters", title="Dead letters",
    )  # fmt: skip


@router.get("/dead-letters/{letter_id}", name="dead_letter", **scoped(Scope.dlq_read))
async def dead_letter_page(request: Request, letter_id: Id) -> HTMLResponse:
    """One dead letter: why it was refused, its raw bytes, how to replay it and what
    happened to it (and to its event) since."""
    viewer = await signed_in(request)
    async with read_snapshot(engine(request)) as conn:
        letter = await dead_letter_reads.dead_letter(conn, letter_id)
        if letter is None:
            raise Refusal(404, "No such dead letter", f"There is no dead letter {letter_id}.")
        history = await dead_letter_reads.dead_letter_history(conn, letter)
    return page(
        request, "dead_letter.html", viewer, letter=letter, size=len(letter.raw),
        hex_lines=documents.hex_dump(letter.raw), history=history,
        active="dead_letters", title=f"Dead letter {letter_id}",
    )  # fmt: skip
