"""Ensembles and post-processing: aggregation, pgm -> cm reconciliation, non-negativity."""
