"""Where results live: model artifacts, predictions and run records, all hash-verified."""
