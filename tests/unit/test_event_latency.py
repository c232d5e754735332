"""The event-to-commit histogram is filled a batch at a time; it must count exactly what
observing each event alone would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tally.adapters.telemetry.metrics import EventCommitLatency


@given(
    batches=st.lists(
        st.tuples(
            st.lists(st.integers(0, 400_000), min_size=1, max_size=50),  # ms before the commit
            st.integers(1_700_000_000_000, 1_800_000_000_000),  # the commit's time, ms
        ),
        max_size=5,
    )
)
def test_a_batch_counts_as_its_events_one_by_one(batches: list[tuple[list[int], int]]) -> None:
    histogram = EventCommitLatency()
    expected = [0] * len(EventCommitLatency.BUCKETS_MS)
    total_ms = 0
    for ages, committed in batches:
        ids = [f"{committed - age}-{n}" for n, age in enumerate(ages)]
        histogram.observe_batch(ids, committed)
        for age in ages:
            total_ms += age
            for i, bound in enumerate(EventCommitLatency.BUCKETS_MS):
                expected[i] += age <= bound
    [family] = list(histogram.collect())
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    count = sum(len(ages) for ages, _ in batches)
    assert [buckets[str(ms / 1000)] for ms in EventCommitLatency.BUCKETS_MS] == expected
    assert buckets["+Inf"] == count
    [total] = [s.value for s in family.samples if s.name.endswith("_sum")]
    assert total == total_ms / 1000
