"""The VIEWS peers (views-evaluation, views-baseline, views-stepshifter), driven side by side.

``install.py`` builds one virtualenv per peer on demand; the ``drive_*.py`` scripts run inside
those venvs (they import only the peer and its own dependencies, never ewspipe), read the input
files a benchmark wrote, call the peer's public API and print one JSON document with their
results and their own timings. ``python -m benchmarks.peers [NAME ...]`` installs ahead of time.
"""
