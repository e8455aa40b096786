"""lookalike: similar-product search for e-commerce (Ray-free core)."""

__version__ = "0.1.0"
