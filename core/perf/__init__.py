"""Measuring speed and memory: the benchmark."""
