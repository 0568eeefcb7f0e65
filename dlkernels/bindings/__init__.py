"""The public API layer: input checks, backend choice, estimators."""
