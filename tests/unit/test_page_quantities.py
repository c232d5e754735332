"""The pages' quantities read exactly as Babel's en_US ``format_decimal`` writes them (the
pages once called it per number; the fast path must not change a character)."""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_decimal
from hypothesis import given
from hypothesis import strategies as st

from tally.entrypoints.pages.formatting import qty


def babel(value: Decimal | int) -> str:
    return format_decimal(
        Decimal(value).normalize() if value else 0, locale="en_US", decimal_quantization=False
    )


@given(st.integers(min_value=-(10**20), max_value=10**20))
def test_whole_counts_are_grouped_by_thousands_as_babel_groups_them(value: int) -> None:
    assert qty(value) == babel(value)


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**15), max_value=10**15))
def test_decimals_keep_every_digit_as_babel_writes_them(value: Decimal) -> None:
    assert qty(value) == babel(value)


def test_examples_a_reader_sees() -> None:
    assert [qty(Decimal("1234567.8900")), qty(0), qty(Decimal("1E+3")), qty(-2500)] == [
        "1,234,567.89",
        "0",
        "1,000",
        "-2,500",
    ]
