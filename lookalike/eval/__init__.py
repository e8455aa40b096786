"""Retrieval-quality evaluation: `python -m lookalike.eval` (see harness.py)."""
