"""Storage of products and their vectors behind a small interface."""

from lookalike.store.base import (
    Filters,
    Hit,
    ProductStore,
    StoredProduct,
    StoreError,
    StoreRequestError,
)
from lookalike.store.milvus import MilvusStore

__all__ = ["Filters", "Hit", "MilvusStore", "ProductStore", "StoreError", "StoreRequestError", "StoredProduct"]
