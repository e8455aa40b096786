"""ONNX Runtime backend for the embedders' forward pass (LOOKALIKE_MODEL_RUNTIME=onnx).

The embedders keep their own preprocessing (timm transform, tokenizer) and their own
postprocessing (l2_normalise); only `forward` runs here instead of in torch. The graph is
exported once from the very torch module the embedder loaded into a cache under the data dir
(`data_dir/models/onnx`, rebuildable, never committed) and named by a fingerprint of the weights,
the export recipe and the installed torch/onnxruntime, so new weights or a new exporter export
again instead of loading a stale graph. Replicas and ingest actors that start at once export
it once: a file lock serialises them and the graph appears by an atomic rename.

`quantize="int8"` runs onnxruntime's dynamic int8 quantization on the exported graph (weights
int8, activations quantized per batch); its vectors are other vectors, so it has its own tag
in the model version. Settings offer it for the text model only (LOOKALIKE_TEXT_QUANTIZE):
on EfficientNet-Lite0 it was slower than fp32 and cost image P@10 (bench/p7_runtime.py).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lookalike.embedding.common import fingerprint
from lookalike.embedding.errors import ModelUnavailableError

# Opset 17 covers every op both models use; bumping it changes the fingerprint (re-export).
OPSET = 17
TORCH = "torch"
ONNX = "onnx"


@dataclass(frozen=True)
class OnnxOptions:
    cache_dir: Path
    quantize: str = "none"  # "none" | "int8"

    @property
    def tag(self) -> str:
        """Appended to the model version: what ran the model shapes the vectors."""
        return "+onnx" if self.quantize == "none" else f"+onnx-{self.quantize}"


def options_from_settings(settings: Any, role: str) -> OnnxOptions | None:
    """None for the torch runtime (the default); the ONNX options of `role` ("image" or
    "text") otherwise. Only the text model has an int8 option (settings.text_quantize)."""
    if getattr(settings, "model_runtime", TORCH) != ONNX:
        return None
    quantize = settings.text_quantize if role == "text" else "none"
    return OnnxOptions(cache_dir=Path(settings.resolved_model_cache_dir), quantize=quantize)


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelUnavailableError(
            "LOOKALIKE_MODEL_RUNTIME=onnx needs onnxruntime and onnx: pip install "
            "'lookalike[onnx]'") from exc
    return onnxruntime


class OnnxGraph:
    """One exported graph and its inference session: `run(feeds) -> first output`."""

    def __init__(self, path: Path, *, num_threads: int | None) -> None:
        ort = _import_ort()
        opts = ort.SessionOptions()
        # Same thread budget as torch would get: replicas scale out, not up (see deployments).
        if num_threads:
            opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        self.session = ort.InferenceSession(str(path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {k: feeds[k] for k in self.input_names})[0]


def _export_once(module: torch.nn.Module, example: tuple[torch.Tensor, ...], *,
                 input_names: Sequence[str], dynamic_axes: dict[str, dict[int, str]],
                 path: Path, quantize: str) -> None:
    """Export `module` to `path` unless it is there; at most one exporter per file at a time."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            return
        fp32 = path.with_name(path.stem + ".fp32.tmp.onnx")
        with warnings.catch_warnings():
            # The TorchScript exporter (dynamo=False) is deprecated in favour of torch.export,
            # which needs onnxscript and fails on the BERT attention mask today; this one is
            # exact for both models (tests/integration/test_onnx_runtime.py checks it).
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), example, str(fp32), dynamo=False,
                              input_names=list(input_names), output_names=["output"],
                              dynamic_axes={**dynamic_axes, "output": {0: "batch"}},
                              opset_version=OPSET, do_constant_folding=True)
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            tmp = path.with_name(path.stem + ".int8.tmp.onnx")
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
            fp32.unlink()
            fp32 = tmp
        os.replace(fp32, path)  # atomic: a reader sees no graph or the whole graph


def _graph_path(options: OnnxOptions, role: str, *parts: Any) -> Path:
    ort = _import_ort()
    key = fingerprint(*parts, OPSET, options.quantize, torch.__version__, ort.__version__)
    return Path(options.cache_dir).resolve() / "onnx" / f"{role}-{key}.onnx"


class _ImageForward(torch.nn.Module):
    """What ImageEmbedder.forward computes: the pooled pre-logits features."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(pixels), pre_logits=True)


class _TextForward(torch.nn.Module):
    """What TextEmbedder.forward computes: the mask-weighted mean of the last hidden state."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def image_graph(model: torch.nn.Module, input_size: Sequence[int], *, weights_digest: str,
                options: OnnxOptions, num_threads: int | None) -> OnnxGraph:
    """The image model's forward as an ONNX graph; feed {"pixels": float32 NCHW}."""
    path = _graph_path(options, "image", weights_digest, list(input_size), "pre_logits")
    example = (torch.zeros((2, *input_size), dtype=torch.float32),)
    _export_once(_ImageForward(model), example, input_names=["pixels"],
                 dynamic_axes={"pixels": {0: "batch"}}, path=path, quantize=options.quantize)
    return OnnxGraph(path, num_threads=num_threads)


def text_graph(model: torch.nn.Module, *, weights_digest: str, options: OnnxOptions,
               num_threads: int | None) -> OnnxGraph:
    """The text model + mean pooling as an ONNX graph; feed the tokenizer's numpy output
    (input_ids, attention_mask, token_type_ids; int64)."""
    path = _graph_path(options, "text", weights_digest, "mean-pool")
    ids = torch.ones((2, 8), dtype=torch.int64)
    example = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    axes = {"batch": 0, "tokens": 1}
    names = ["input_ids", "attention_mask", "token_type_ids"]
    _export_once(_TextForward(model), example, input_names=names,
                 dynamic_axes={n: {v: k for k, v in axes.items()} for n in names},
                 path=path, quantize=options.quantize)
    return OnnxGraph(path, num_threads=num_threads)


def text_feeds(encoded: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Tokenizer output (return_tensors="np") as int64 feeds; token_type_ids all zero if the
    tokenizer gives none (one-segment inputs, as for BERT)."""
    ids = np.asarray(encoded["input_ids"], dtype=np.int64)
    feeds = {"input_ids": ids,
             "attention_mask": np.asarray(encoded["attention_mask"], dtype=np.int64)}
    tt = encoded.get("token_type_ids")
    feeds["token_type_ids"] = (np.zeros_like(ids) if tt is None
                               else np.asarray(tt, dtype=np.int64))
    return feeds
