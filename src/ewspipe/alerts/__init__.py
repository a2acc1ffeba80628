"""Alerts: one record type for every producer (drift, reconciliation, gates, failures)."""

from ewspipe.alerts.records import Alert, Severity

__all__ = ["Alert", "Severity"]
