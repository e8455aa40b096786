"""ONNX Runtime backend for the embedders' forward pass, the default on the CPU
(LOOKALIKE_MODEL_RUNTIME=auto; "onnx" or "torch" to choose).

The embedders keep their own preprocessing (timm transform, tokenizer) and their own
postprocessing (l2_normalise); only `forward` runs here instead of in torch. The graph is
exported once from the very torch module the embedder loaded into a cache under the data dir
(`data_dir/models/onnx`, rebuildable, never committed) and named by a fingerprint of the weights,
the export recipe and the installed torch/onnx/onnxruntime, so new weights or a new exporter
export again instead of loading a stale graph. Replicas and ingest actors that start at once
export it once: a file lock serialises them, each writes its own temporary file and the graph
appears by an atomic rename. Before the rename the graph is checked against torch on an example
batch (cosine >= MIN_COSINE): an fp32 graph gives torch's vectors, so it keeps torch's model
version and replicas on either runtime serve one collection. Anything that fails (export, check,
load, a broken cached file) logs one WARNING and the embedder runs torch: never a failed start.

`quantize="int8"` runs onnxruntime's dynamic int8 quantization on the exported graph (weights
int8, activations quantized per batch); its vectors are other vectors, so it has its own tag
in the model version. Settings offer it for the text model only (LOOKALIKE_TEXT_QUANTIZE):
on EfficientNet-Lite0 it was slower than fp32 and cost image P@10 (bench/p7_runtime.py).
"""

from __future__ import annotations

import logging
import os
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lookalike.embedding.common import fingerprint
from lookalike.embedding.errors import ModelUnavailableError

if TYPE_CHECKING:
    from lookalike.config import Settings

log = logging.getLogger(__name__)

# Opset 17 covers every op both models use; bumping it changes the fingerprint (re-export).
OPSET = 17
ONNX = "onnx"
# An fp32 graph that gives other vectors than torch is not used (see _check_graph).
MIN_COSINE = 0.999
# Longest wait for another process's export (normally seconds); then torch rather than a hang.
LOCK_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class OnnxOptions:
    cache_dir: Path
    quantize: str = "none"  # "none" | "int8"

    @property
    def tag(self) -> str:
        """Appended to the model version. Empty for fp32: the graph is checked to give torch's
        vectors, so torch and ONNX replicas (a fallback) share collections and resume."""
        return "" if self.quantize == "none" else f"+onnx-{self.quantize}"


def options_from_settings(settings: Settings, role: str) -> OnnxOptions | None:
    """None for the torch runtime; the ONNX options of `role` ("image" or "text") otherwise.
    Only the text model has an int8 option (settings.text_quantize)."""
    if settings.resolved_model_runtime != ONNX:
        return None
    quantize = settings.text_quantize if role == "text" else "none"
    return OnnxOptions(cache_dir=Path(settings.resolved_model_cache_dir), quantize=quantize)


def graph_or_torch(build: Callable[[], OnnxGraph], *, role: str) -> OnnxGraph | None:
    """`build()`, or None (the embedder runs torch) after one WARNING if anything fails."""
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - any failure means torch, never a failed start
        log.warning("ONNX Runtime unavailable for the %s model, running it on torch (same "
                    "vectors, slower): %s: %s. A broken graph in the model cache can be "
                    "deleted; it is exported again on the next start.",
                    role, type(exc).__name__, exc)
        return None


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelUnavailableError("onnxruntime is not installed (a lookalike dependency): "
                                    "pip install -c constraints.txt onnxruntime onnx") from exc
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
    with FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S):
        if path.is_file():
            return
        # Own temporary names: a crashed exporter's leftovers never collide with this one.
        tmp = f"{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
        fp32, int8 = path.with_name(tmp + ".fp32.tmp"), path.with_name(tmp + ".int8.tmp")
        try:
            with warnings.catch_warnings():
                # The TorchScript exporter (dynamo=False) is deprecated in favour of
                # torch.export, which needs onnxscript and fails on the BERT attention mask
                # today; this one is exact for both models (_check_graph checks it).
                warnings.simplefilter("ignore")
                torch.onnx.export(module.eval(), example, str(fp32), dynamo=False,
                                  input_names=list(input_names), output_names=["output"],
                                  dynamic_axes={**dynamic_axes, "output": {0: "batch"}},
                                  opset_version=OPSET, do_constant_folding=True)
            _check_graph(module, example, fp32, input_names)
            if quantize == "int8":
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
                os.replace(int8, path)
            else:
                os.replace(fp32, path)  # atomic: a reader sees no graph or the whole graph
        finally:
            fp32.unlink(missing_ok=True)
            int8.unlink(missing_ok=True)


@torch.inference_mode()
def _check_graph(module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path,
                 input_names: Sequence[str]) -> None:
    """Refuse a graph whose vectors are not torch's (cosine < MIN_COSINE on `example`)."""
    want = torch.nn.functional.normalize(module(*example).float(), dim=-1).numpy()
    feeds = {name: t.numpy() for name, t in zip(input_names, example)}
    got = OnnxGraph(path, num_threads=1).run(feeds)
    got = got / np.linalg.norm(got, axis=-1, keepdims=True)
    cos = float((want * got).sum(-1).min())
    if not cos >= MIN_COSINE:  # `not >=`: a NaN fails too
        raise ValueError(f"the exported graph's vectors are not torch's (cosine {cos:.6f})")


def _graph_path(options: OnnxOptions, role: str, *parts: Any) -> Path:
    import onnx

    ort = _import_ort()
    key = fingerprint(*parts, OPSET, options.quantize, torch.__version__, onnx.__version__,
                      ort.__version__)
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
    gen = torch.Generator().manual_seed(0)  # the check's example: seeded, not all zeros
    example = (torch.randn((2, *input_size), generator=gen, dtype=torch.float32),)
    _export_once(_ImageForward(model), example, input_names=["pixels"],
                 dynamic_axes={"pixels": {0: "batch"}}, path=path, quantize=options.quantize)
    return OnnxGraph(path, num_threads=num_threads)


def text_graph(model: torch.nn.Module, *, weights_digest: str, options: OnnxOptions,
               num_threads: int | None) -> OnnxGraph:
    """The text model + mean pooling as an ONNX graph; feed the tokenizer's numpy output
    (input_ids, attention_mask, token_type_ids; int64)."""
    path = _graph_path(options, "text", weights_digest, "mean-pool")
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (2, 8), generator=gen)  # in every BERT-size vocabulary
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # one padded row: the pooling's mask is checked too
    example = (ids, mask, torch.zeros_like(ids))
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
