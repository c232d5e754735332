"""Which events an entry carries, and what an event's status is once voids count: the SQL
every reader of events shares (verify, entry details, lineage, statements)."""

from __future__ import annotations

# The events each entry carries (what its hash covers of events), as ``usage_event`` rows
# with their carrier's id in ``carrier``: a usage entry's (``usage_event.entry_id``) and a
# usage reversal's, the one event it voids (``event_void.entry_id``).
CARRIED_EVENTS = """(SELECT v.entry_id AS carrier, v.* FROM usage_event v
                      WHERE v.entry_id IS NOT NULL
                     UNION ALL
                     SELECT x.entry_id AS carrier, v.* FROM event_void x
                       JOIN usage_event v ON v.source = x.source AND v.id = x.id)"""


def event_status(alias: str) -> str:
    """The status of the ``usage_event`` row ``alias``: ``voided`` once a void took it back
    (the row itself never changes)."""
    return (
        f"CASE WHEN EXISTS (SELECT 1 FROM event_void x WHERE x.source = {alias}.source "
        f"AND x.id = {alias}.id) THEN 'voided' ELSE {alias}.status END"
    )
