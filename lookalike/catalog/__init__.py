"""Catalogue: the product record, the manifest format and the demo catalogue."""

from lookalike.catalog.manifest import RowError, iter_manifest, load_manifest, parse_row
from lookalike.catalog.product import Product

__all__ = ["Product", "RowError", "iter_manifest", "load_manifest", "parse_row"]
