"""CLIP as both encoders (transformers CLIPModel): text and photos in one vector space.

Used when LOOKALIKE_CLIP_MODEL names an HF id or a local directory holding a CLIP model, its
tokenizer and its image processor config (what `save_pretrained` writes). The two roles stay two
classes with the interfaces of ImageEmbedder and TextEmbedder, so the Serve deployments and the
Ray Data ingest call them exactly as they call those (lookalike/embedding/factory.py picks):
preprocess (pure, CPU) -> forward (torch.inference_mode) -> postprocess (L2-normalise).

`cross_modal = True` tells the search path that a text vector may be compared with image
vectors: a text query then also searches the photos (lookalike/search.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from lookalike.embedding.common import (
    fingerprint,
    hub_reachable,
    l2_normalise,
    pick_device,
    set_torch_threads,
    weights_digest,
)
from lookalike.embedding.errors import ModelUnavailableError
from lookalike.images import to_rgb

if TYPE_CHECKING:
    from lookalike.config import Settings


def _load(kind: str, name: str) -> Any:
    """A CLIP part (model, tokenizer, image processor) from a dir, the HF cache, or the hub."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    loader = {"model": CLIPModel, "tokenizer": AutoTokenizer,
              "image processor": CLIPImageProcessor}[kind]
    try:
        return loader.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        if Path(name).is_dir() or not hub_reachable():
            raise ModelUnavailableError(
                f"CLIP {kind} for {name!r} not found locally and the hub is unreachable; set "
                "LOOKALIKE_CLIP_MODEL to a local directory with a saved CLIP model") from exc
    return loader.from_pretrained(name)


def _features(out: Any) -> torch.Tensor:
    # transformers 4 returns the projected features; 5 a ModelOutput holding them.
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class _Clip:
    """The loaded model, shared code of both roles."""

    def __init__(self, model: str, *, device: str, num_threads: int | None) -> None:
        set_torch_threads(num_threads)
        self.name = model
        self.device = pick_device(device)
        self.model = _load("model", model)
        self.digest = weights_digest(self.model)
        self.model.eval().to(self.device)
        if self.device.type == "cuda":
            self.model.half()
        self.dim: int = int(self.model.config.projection_dim)
        self.dtype = str(next(self.model.parameters()).dtype)


class ClipImagePreprocessor:
    """CLIP's own resize, crop and normalisation (its image processor); pure and picklable."""

    # The router sends the decoded image as is: CLIP's processor does its own resize.
    resize = None

    def __init__(self, model: str) -> None:
        self.processor = _load("image processor", model)
        self.config: dict[str, Any] = self.processor.to_dict()
        crop = self.processor.crop_size or {}
        self.input_size: tuple[int, int, int] = (3, int(crop["height"]), int(crop["width"]))

    def __call__(self, images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
        pils = [to_rgb(Image.fromarray(np.asarray(i, dtype=np.uint8)) if isinstance(i, np.ndarray)
                       else i) for i in images]
        if not pils:
            return np.empty((0, *self.input_size), dtype=np.float32)
        return np.asarray(self.processor(images=pils, return_tensors="np")["pixel_values"],
                          dtype=np.float32)


class ClipImageEmbedder:
    """Photos -> CLIP image features, L2-normalised float32 (ImageEmbedder's interface)."""

    cross_modal = True

    def __init__(self, model: str, *, device: str = "cpu", num_threads: int | None = None) -> None:
        self.clip = _Clip(model, device=device, num_threads=num_threads)
        self.model_name = model
        self.device = self.clip.device
        self.preprocess = ClipImagePreprocessor(model)
        self.dim = self.clip.dim
        self.version = f"clip:{model}:image@" + fingerprint(
            self.clip.digest, self.preprocess.config, self.clip.dtype)

    @classmethod
    def from_settings(cls, settings: Settings, *,
                      num_threads: int | None = None) -> ClipImageEmbedder:
        return cls(settings.clip_model, device=settings.device, num_threads=num_threads)

    @torch.inference_mode()
    def forward(self, pixels: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device)
        if self.device.type == "cuda":
            x = x.half()
        return _features(self.clip.model.get_image_features(pixel_values=x))

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        if len(pixels) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return l2_normalise(self.forward(pixels))

    def embed(self, images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
        return self.embed_pixels(self.preprocess(images))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ray Data entry: `pixels` (preprocessed) -> adds `image_vector`, drops `pixels`."""
        pixels = np.stack(list(batch.pop("pixels"))) if len(batch["pixels"]) else batch.pop("pixels")
        batch["image_vector"] = self.embed_pixels(np.asarray(pixels, dtype=np.float32))
        return batch


class ClipTextEmbedder:
    """Texts -> CLIP text features in the photos' space (TextEmbedder's interface)."""

    cross_modal = True

    def __init__(self, model: str, *, device: str = "cpu", num_threads: int | None = None) -> None:
        self.clip = _Clip(model, device=device, num_threads=num_threads)
        self.device = self.clip.device
        self.tokenizer = _load("tokenizer", model)
        # CLIP's position table is short (77 for OpenAI's): longer text is cut there.
        self.max_length = int(self.clip.model.config.text_config.max_position_embeddings)
        self.dim = self.clip.dim
        self.version = f"clip:{model}:text:max{self.max_length}@" + fingerprint(
            self.clip.digest, type(self.tokenizer).__name__, self.tokenizer.vocab_size,
            self.max_length, self.clip.dtype)

    @classmethod
    def from_settings(cls, settings: Settings, *,
                      num_threads: int | None = None) -> ClipTextEmbedder:
        return cls(settings.clip_model, device=settings.device, num_threads=num_threads)

    @torch.inference_mode()
    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt").to(self.device)
        # CLIP's text tower takes ids and mask only (a BERT-style tokenizer adds token types).
        return _features(self.clip.model.get_text_features(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return l2_normalise(self.forward(texts))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ray Data entry: `text` -> adds `text_vector`."""
        batch["text_vector"] = self.embed([str(t) for t in batch["text"]])
        return batch
