"""Evaluation of a finished run: base against tuned on held-out data, and benchmarks through lm-eval."""
