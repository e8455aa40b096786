"""Embedders: real packaged weights prove the load is right; random weights test the code path."""

import socket
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from lookalike.embedding import ImageEmbedder, ModelUnavailableError, TextEmbedder
from lookalike.embedding.efficientnet_lite import convert_state_dict, packaged_checkpoint

pytestmark = pytest.mark.weights  # the packaged models (a few tests use random weights)

ESPRESSO = 967
CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def image_embedder() -> ImageEmbedder:
    return ImageEmbedder()


@pytest.fixture(scope="module")
def text_embedder() -> TextEmbedder:
    return TextEmbedder()


def test_packaged_weights_convert_to_every_timm_key() -> None:
    import timm

    converted = convert_state_dict(torch.load(packaged_checkpoint(), map_location="cpu"))
    assert set(converted) == set(timm.create_model("tf_efficientnet_lite0").state_dict())


def test_packaged_image_weights_classify_real_photos(image_embedder: ImageEmbedder) -> None:
    logits = image_embedder.classify([Image.fromarray(skimage.data.coffee()),
                                      Image.fromarray(skimage.data.chelsea())])
    assert logits[0].argmax() == ESPRESSO
    assert logits[1].argmax() in CAT_CLASSES


def test_image_vectors_are_normalised_and_stable(image_embedder: ImageEmbedder) -> None:
    img = Image.fromarray(skimage.data.chelsea())
    a, b = image_embedder.embed([img]), image_embedder.embed([img, img.transpose(Image.FLIP_LEFT_RIGHT)])
    assert a.shape == (1, 1280) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    assert np.allclose(a[0], b[0], atol=1e-4)  # batching does not change a vector
    assert image_embedder.version.startswith("tf_efficientnet_lite0:packaged@")


def test_ray_data_batch_entry_matches_embed(image_embedder: ImageEmbedder) -> None:
    img = Image.fromarray(skimage.data.astronaut())
    batch = {"pixels": image_embedder.preprocess([img]), "product_id": np.array(["x"])}
    out = image_embedder(batch)
    assert "pixels" not in out
    assert np.allclose(out["image_vector"], image_embedder.embed([img]), atol=1e-5)


def test_random_weights_and_other_timm_models() -> None:
    e = ImageEmbedder("resnet18", weights=None)
    assert e.embed([np.zeros((40, 30, 3), np.uint8)]).shape == (1, 512)
    assert e.version.startswith("resnet18:random@")


def test_missing_weights_fail_fast_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="checkpoint"):
        ImageEmbedder("resnet18", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ModelUnavailableError, match="packaged"):
        ImageEmbedder("resnet34", weights="packaged")


def test_local_checkpoint_loads(tmp_path: Path) -> None:
    import timm

    path = tmp_path / "r18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    assert ImageEmbedder("resnet18", weights=str(path)).version.startswith("resnet18:sha256-")


def test_text_embedder_real_weights(text_embedder: TextEmbedder) -> None:
    v = text_embedder.embed(["red summer dress", "crimson dress for summer", "leather ankle boots"])
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    sims = v @ v.T
    assert sims[0, 1] > sims[0, 2] + 0.2


def test_text_ray_data_entry(text_embedder: TextEmbedder) -> None:
    out = text_embedder({"text": np.array(["a", "b"])})
    assert out["text_vector"].shape == (2, 384)


def test_unknown_text_model_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, an unknown model fails at once: it never reaches for the network (no look-up,
    no connection: what makes a failure slow is a hub that is waited for)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reached: list[object] = []
    lookup, connect = socket.getaddrinfo, socket.socket.connect

    def noted_lookup(host: object, *args: object, **kwargs: object) -> object:
        reached.append(host)
        return lookup(host, *args, **kwargs)

    def noted_connect(sock: socket.socket, address: object) -> object:
        if sock.family != socket.AF_UNIX:
            reached.append(address)
        return connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", noted_lookup)
    monkeypatch.setattr(socket.socket, "connect", noted_connect)
    with pytest.raises(ModelUnavailableError, match="LOOKALIKE_TEXT_MODEL"):
        TextEmbedder("someone/not-a-real-model")
    assert reached == []


def test_model_version_follows_the_weights_not_their_label(tmp_path: Path,
                                                           image_embedder: ImageEmbedder) -> None:
    state = {k: v.clone() for k, v in image_embedder.model.state_dict().items()}
    same, changed = tmp_path / "same.pt", tmp_path / "changed.pt"
    torch.save(state, same)
    state["conv_stem.weight"][0, 0, 0, 0] += 0.5  # one weight differs
    torch.save(state, changed)
    fingerprint = lambda e: e.version.rsplit("@", 1)[1]
    assert fingerprint(ImageEmbedder(weights=str(same))) == fingerprint(image_embedder)
    assert fingerprint(ImageEmbedder(weights=str(changed))) != fingerprint(image_embedder)
    assert image_embedder.version.startswith("tf_efficientnet_lite0:packaged@")


def test_model_version_follows_preprocessing_and_dtype(image_embedder: ImageEmbedder,
                                                       text_embedder: TextEmbedder) -> None:
    from lookalike.embedding.common import fingerprint

    cfg = dict(image_embedder.preprocess.config)
    base = fingerprint("w", cfg, "torch.float32")
    assert fingerprint("w", {**cfg, "crop_pct": 0.9}, "torch.float32") != base
    assert fingerprint("w", cfg, "torch.float16") != base
    shorter = TextEmbedder(max_length=64)
    assert shorter.version != text_embedder.version


# Titles of every length the catalogue has: empty, one word, long enough to be truncated at 128
# tokens, non-ASCII; batched together so padding is exercised as well.
TEXTS = ["", "dress", "red summer dress with a belt", "Blaue Jeans für Damen, große Größe",
         " ".join(["very long title"] * 80), "sneaker 👟 white"]


def hand_rolled(texts: list[str], max_length: int = 128) -> tuple[np.ndarray, str]:
    """The text embedder as it was before sentence-transformers: AutoTokenizer + AutoModel,
    mask-weighted mean pooling, L2 norm; and the model version it computed."""
    from transformers import AutoModel, AutoTokenizer

    from lookalike.embedding.common import fingerprint, weights_digest
    from lookalike.embedding.text import _tokenizer_digest, packaged_model_dir

    tokenizer = AutoTokenizer.from_pretrained(packaged_model_dir(), local_files_only=True)
    model = AutoModel.from_pretrained(packaged_model_dir(), local_files_only=True)
    # Before the first call: a call leaves its padding/truncation settings in the tokenizer spec.
    version = f"all-MiniLM-L6-v2:packaged:max{max_length}@" + fingerprint(
        weights_digest(model), _tokenizer_digest(tokenizer), max_length, "mean-pool",
        "torch.float32")
    model.eval()
    with torch.inference_mode():
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=-1).numpy(), version


def test_sentence_transformers_gives_the_hand_rolled_vectors_and_version(
        text_embedder: TextEmbedder) -> None:
    want, version = hand_rolled(TEXTS)
    got = text_embedder.embed(TEXTS)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    # One at a time (no padding) too: what a lone query gets from the Serve batcher.
    np.testing.assert_allclose(np.vstack([text_embedder.embed([t]) for t in TEXTS]), want,
                               atol=1e-6, rtol=0)
    # Same version: stored vectors stay valid, a re-ingest still skips unchanged products.
    assert text_embedder.version == version
