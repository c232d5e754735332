"""``tally chaos``'s oracle: every entry sent recorded exactly once, whichever delivery of
a key the consumer stored first. A run is only as good as the check that judges it."""

from __future__ import annotations

from tally_tools.chaos import Sent, compare, record_sent
from tally_tools.loadgen import LoadMix


def sent_of_two_keys() -> Sent:
    """Key a delivered twice (1-0, 3-0), key b once (2-0), one bad entry (4-0)."""
    return Sent(
        deliveries={("s", "a"): {"1-0", "3-0"}, ("s", "b"): {"2-0"}},
        duplicates=1,
        bad={"4-0"},
        entries=4,
    )


def test_every_entry_recorded_once_is_exact_whichever_delivery_was_stored() -> None:
    # the re-delivery 3-0 stored as the event, the original 1-0 recorded as its duplicate
    seen = compare(
        sent_of_two_keys(),
        [("s", "a", "3-0"), ("s", "b", "2-0")],
        [("s", "a", "1-0")],
        ["4-0"],
    )
    assert (seen.metered, seen.lost, seen.doubled, seen.duplicates_recorded) == (2, 0, 0, 1)


def test_a_key_not_stored_and_a_bad_entry_without_a_letter_are_lost() -> None:
    seen = compare(sent_of_two_keys(), [("s", "a", "1-0")], [("s", "a", "3-0")], [])
    assert (seen.metered, seen.lost, seen.doubled) == (1, 2, 0)


def test_a_delivery_or_a_letter_recorded_twice_or_unsent_is_doubled() -> None:
    seen = compare(
        sent_of_two_keys(),
        [("s", "a", "1-0"), ("s", "b", "2-0"), ("s", "ghost", "9-0")],
        [("s", "a", "1-0"), ("s", "a", "3-0")],  # 1-0 both stored and a duplicate
        ["4-0", "4-0", "2-0"],  # a letter twice, a valid event lettered
    )
    assert (seen.lost, seen.doubled) == (0, 1 + 1 + 1 + 1)


def test_record_sent_groups_a_mix_by_key() -> None:
    mix = LoadMix(["acme", "globex"], "2026-10", 2000, seed=3)
    entries = list(mix)
    sent = record_sent(entries, [f"{n}-0" for n in range(len(entries))])
    summary = mix.summary
    assert len(sent.deliveries) == summary.good
    assert sent.duplicates == summary.duplicates > 0
    assert len(sent.bad) == summary.bad_total > 0
    assert sum(len(ids) for ids in sent.deliveries.values()) == summary.good + summary.duplicates
