"""Benchmarks of the offline preview: `python -m benchmarks` (or `make benchmark`)."""
