"""Query understanding: the shopper's words and photo mapped onto the catalogue's vocabulary."""
