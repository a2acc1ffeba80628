"""Benchmarks: speed and memory targets live here, never in timed unit tests.

Run ``python -m benchmarks [NAME ...]`` from the repository root (or ``make bench``). Each
``bench_*.py`` module in this package exposes ``BENCHMARKS: list[Benchmark]``; results go to
``benchmarks/results/<name>.json`` and ``docs/benchmarks.md`` is rebuilt from all of them.
"""
