"""The product record shared by the manifest loader, the ingest job, the store and the API."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

CORE_FIELDS = ("product_id", "title", "description", "category", "color", "size", "price", "images")


@dataclass(frozen=True)
class Product:
    product_id: str
    title: str = ""
    description: str = ""
    category: str = ""
    color: str = ""
    size: str = ""
    price: float | None = None
    images: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """What the text embedder sees: title and description, plus colour and category so a
        query like "red dress" matches on the facts a shopper types."""
        parts = [self.title, self.description, " ".join(p for p in (self.color, self.category) if p)]
        return ". ".join(p for p in parts if p)

    def content_hash(self, image_digests: tuple[str, ...] = ()) -> str:
        """Changes when anything that shapes the stored vectors or fields changes (resume and
        idempotence): the fields and the images' *pixels*, in order, through their digests.
        Where the image files live is left out, so moving a catalogue folder (or a CDN
        rename) re-embeds nothing; the stored references still follow the manifest."""
        fields = asdict(self)
        del fields["images"]
        payload = json.dumps([fields, list(image_digests)], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["images"] = list(self.images)
        return d
