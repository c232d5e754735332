"""A stream entry is exactly one field, ``event``: a repeated field or a field beside it is
refused with its own code, kept byte-exact, and replayed as the very same entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from support.entry_shapes import ONE, SHAPES, Pairs
from tally.adapters.ratecard_files import bundled_cards
from tally.domain.ratecard import RateCardBook
from tally.domain.rating import Fields, Limits, Rated, Reject, rate, stream_fields

LIMITS = Limits(max_event_bytes=65_536, max_future_skew=timedelta(minutes=5))
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def rated(fields: Fields, limits: Limits = LIMITS) -> Rated | Reject:
    book = RateCardBook(bundled_cards())
    return rate("1-0", fields, {"acme": "USD"}, book, limits, NOW)


@pytest.mark.parametrize(("pairs", "code", "reason"), SHAPES.values(), ids=list(SHAPES))
def test_an_entry_that_is_not_one_event_field_is_refused_and_kept_whole(
    pairs: Pairs, code: str, reason: str
) -> None:
    reject = rated(pairs)
    assert isinstance(reject, Reject)
    assert (reject.code, reason in reject.reason) == (code, True), reject.reason
    assert stream_fields(reject.raw, reject.code) == pairs  # repeats and order included


def test_fields_that_are_not_utf8_come_back_byte_exact() -> None:
    pairs = [(b"event", ONE), (b"\xff\xfeod\xc3", b"\x00\x80 \xed\xa0\x80"), (b"\xfe", b"")]
    reject = rated(pairs)
    assert isinstance(reject, Reject) and reject.code == "unexpected_field"  # names differ
    assert stream_fields(reject.raw, reject.code) == pairs


def test_a_mapping_and_pairs_rate_alike() -> None:
    as_pairs, as_mapping = rated([(b"event", ONE)]), rated({b"event": ONE})
    assert isinstance(as_pairs, Rated) and isinstance(as_mapping, Rated)
    assert (as_pairs.key, as_pairs.quantity) == (as_mapping.key, as_mapping.quantity)
    for deleted in ([], {}):
        reject = rated(deleted)
        assert isinstance(reject, Reject) and reject.code == "deleted_from_stream"


def test_the_size_limit_counts_the_whole_entry() -> None:
    whole = len(b"event") + len(ONE)
    assert isinstance(rated([(b"event", ONE)], Limits(whole, LIMITS.max_future_skew)), Rated)
    reject = rated([(b"event", ONE)], Limits(whole - 1, LIMITS.max_future_skew))
    assert isinstance(reject, Reject) and reject.code == "oversized"
    assert reject.reason == f"oversized entry: {whole} bytes, limit {whole - 1}"
    assert stream_fields(reject.raw, reject.code) == [(b"event", ONE)]


def test_letters_kept_before_pairs_still_replay_as_their_fields() -> None:
    """Letters written by earlier versions hold a JSON object of the fields."""
    assert stream_fields(b'{"payload": "{}"}', "missing_event_field") == [(b"payload", b"{}")]
