"""How the pages write numbers: money in its currency (CLDR, via Babel), prices with every
digit they have, quantities with thousands separators, percentages to one decimal."""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import (
    format_compact_decimal,
    format_currency,
    get_currency_precision,
)

LOCALE = "en_US"


def money(amount: Decimal, currency: str) -> str:
    """An amount already rounded to its currency's minor unit (JPY: none)."""
    return format_currency(amount, currency, locale=LOCALE)


def price(unit_price: Decimal, currency: str) -> str:
    """A unit price keeps every digit it has (USD 0.0001 is not $0.00)."""
    return format_currency(
        unit_price,
        currency,
        format="¤#,##0." + "0" * get_currency_precision(currency) + "#" * 10,
        locale=LOCALE,
        currency_digits=False,
        decimal_quantization=False,
    )


def qty(value: Decimal | int) -> str:
    """Every digit, thousands grouped, as en_US writes them (Babel's ``format_decimal``
    gives the same text, 40 times slower: the API usage report writes thousands of these)."""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value.normalize() if value else Decimal(0):,f}"


def approx(value: Decimal) -> str:
    """An estimate (a projection) to two decimal places: more digits would claim precision."""
    return qty(value.quantize(Decimal("0.01")).normalize() if value else Decimal(0))


def pct(value: Decimal | None) -> str:
    return "—" if value is None else f"{value.quantize(Decimal('0.1'))} %"


def short(value: Decimal) -> str:
    """An axis label: 12K, 1.5M."""
    return format_compact_decimal(value, locale=LOCALE, fraction_digits=1)


def share(part: int, whole: int) -> Decimal:
    return Decimal(0) if not whole else (Decimal(part) * 100 / whole).quantize(Decimal("0.01"))
