"""The Python SDK: publish usage events to Tally."""

from tally.sdk.producer import UsageProducer

__all__ = ["UsageProducer"]
