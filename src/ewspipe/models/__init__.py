"""Forecasters: one protocol, a registry keyed by the names model files use."""
