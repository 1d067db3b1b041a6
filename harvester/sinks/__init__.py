"""Sinks: where a harvest's changelog rows go. Flink's sink lives in `flink_jobs`."""

from harvester.sinks.base import ChangeSink
from harvester.sinks.jsonl import JsonLinesSink

__all__ = ["ChangeSink", "JsonLinesSink"]
