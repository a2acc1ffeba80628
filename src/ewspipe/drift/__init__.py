"""Input drift detection: VIEWS detectors plus a zero-inflation-aware one, with a self-test."""
