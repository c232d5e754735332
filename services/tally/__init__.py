"""Tally: an open metering ledger."""
