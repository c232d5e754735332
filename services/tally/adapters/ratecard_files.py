"""The rate cards shipped with Tally, read from ``tally/ratecards/*.toml``."""

from __future__ import annotations

from importlib import resources

from tally.domain.ratecard import RateCard, parse_card


def bundled_cards() -> list[RateCard]:
    folder = resources.files("tally") / "ratecards"
    return [
        parse_card(item.read_text(encoding="utf-8"))
        for item in sorted(folder.iterdir(), key=lambda entry: entry.name)
        if item.name.endswith(".toml")
    ]
