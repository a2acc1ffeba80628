"""Declarative, causal feature transforms computed on whole panels."""
