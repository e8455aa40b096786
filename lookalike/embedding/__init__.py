"""Embedders shared by the Serve deployments and the Ray Data ingest job.

Both follow preprocess (pure, CPU) -> forward (torch.inference_mode) -> postprocess
(L2-normalise to float32), and are callable on a Ray Data batch.
"""

from lookalike.embedding.errors import ModelUnavailableError
from lookalike.embedding.image import ImageEmbedder
from lookalike.embedding.text import TextEmbedder

__all__ = ["ImageEmbedder", "ModelUnavailableError", "TextEmbedder"]
