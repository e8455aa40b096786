"""Helpers both embedders share."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from typing import Any

import numpy as np
import torch


def l2_normalise(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.float(), p=2, dim=-1).cpu().numpy().astype(np.float32)


def pick_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no GPU")
    return torch.device(device)


def set_torch_threads(n: int | None) -> None:
    """Pin intra-op threads so co-located replicas do not oversubscribe the cores."""
    if n:
        torch.set_num_threads(n)


def hub_reachable(host: str = "huggingface.co", timeout_s: float = 2.0) -> bool:
    """A fast check before any hub download, so an offline machine fails in seconds, not minutes."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of the loaded parameters and buffers, so a model version follows the weights
    themselves, whichever file, wheel or hub revision they came from."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def fingerprint(*parts: Any) -> str:
    """A short, stable digest of everything that shapes a vector (weights, preprocessing,
    dtype): part of the model version, so resume never keeps vectors of another model."""
    payload = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]
