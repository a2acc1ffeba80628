"""Runs: plain task functions that turn data and model definitions into stored results."""
