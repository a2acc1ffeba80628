"""The read API and dashboard (FastAPI): published forecasts, evaluations, runs, releases and
alerts."""
