"""Which embedder class serves each role, decided in one place from the settings.

Every caller (the Serve deployments, the Ray Data ingest stages, the upgrade command, the
evaluation) builds its embedders here, so the image role and its preprocessing are the same
everywhere: CLIP when `clip_model` is set (lookalike/embedding/clip.py), else the timm image
model and the transformers text model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lookalike.config import Settings


def image_embedder(settings: Settings, *, num_threads: int | None = None) -> Any:
    if settings.clip_model:
        from lookalike.embedding.clip import ClipImageEmbedder

        return ClipImageEmbedder.from_settings(settings, num_threads=num_threads)
    from lookalike.embedding.image import ImageEmbedder

    return ImageEmbedder.from_settings(settings, num_threads=num_threads)


def text_embedder(settings: Settings, *, num_threads: int | None = None) -> Any:
    if settings.clip_model:
        from lookalike.embedding.clip import ClipTextEmbedder

        return ClipTextEmbedder.from_settings(settings, num_threads=num_threads)
    from lookalike.embedding.text import TextEmbedder

    return TextEmbedder.from_settings(settings, num_threads=num_threads)
