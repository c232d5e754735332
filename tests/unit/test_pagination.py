"""Signed cursors: a server continues after any key it signed, and refuses any cursor it
did not sign exactly so (edited, truncated, or signed by another server's key)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tally.domain.pagination import BadCursor, Cursors

SERVER, OTHER = Cursors(bytes(range(32))), Cursors(bytes(range(1, 33)))
KEYS = st.tuples(
    st.integers(0, 2**63 - 1),
    st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=12),
)


@given(key=KEYS, position=st.integers(0, 200), character=st.characters(codec="ascii"))
def test_only_the_cursor_a_server_signed_continues_its_list(
    key: tuple[int, str], position: int, character: str
) -> None:
    cursor = SERVER.encode(key)
    assert SERVER.decode(cursor, (int, str)) == key
    at = position % len(cursor)
    edited = cursor[:at] + character + cursor[at + 1 :]
    for forged in {edited, cursor[:at], OTHER.encode(key)} - {cursor}:
        with pytest.raises(BadCursor):
            SERVER.decode(forged, (int, str))


def test_a_signed_cursor_of_another_list_shape_is_refused() -> None:
    with pytest.raises(BadCursor, match="does not belong to this list"):
        SERVER.decode(SERVER.encode((1, "x")), (int, int))


def test_a_cursor_of_one_list_is_refused_by_another() -> None:
    invoices, dead_letters = SERVER.bound_to("/v1/invoices"), SERVER.bound_to("/v1/dead-letters")
    cursor = invoices.encode((7,))
    assert invoices.decode(cursor, (int,)) == (7,)
    with pytest.raises(BadCursor, match="not one this list gave out"):
        dead_letters.decode(cursor, (int,))


@pytest.mark.parametrize("part", [2**63, -1, 10**400, "\x00", "\ud800"])
def test_a_signed_key_the_ledger_cannot_hold_is_refused(part: int | str) -> None:
    """Even signed with the server's key (by someone who read it), a key part beyond
    bigint or text PostgreSQL refuses never reaches a query."""
    with pytest.raises(BadCursor, match="does not belong to this list"):
        SERVER.decode(SERVER.encode((part,)), (type(part),))
