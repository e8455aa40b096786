"""Benchmarks and load tools, run as `python -m bench.NAME`; not part of the package."""
