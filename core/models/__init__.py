"""Base models: finding them, loading them, counting their parameters, loading a run's adapter."""
