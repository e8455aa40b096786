"""The ingest job's Ray Data stages: prepare, then the image and text embedders (actor pools).

Rows flow one per *image* after `prepare_batch`. Products that need no embedding (unchanged
since the last run) or cannot be (an image failed) travel as a single marker row with empty
pixels, so the driver sees every product's outcome through the same stream and no side channel
is needed. The embedder stages run the very same embedder classes as the Serve deployments
(the image stage their very `embed` call), on the rows that need it, so stored and query
vectors always agree.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.catalog.product import Product
from lookalike.ingest.fetch import FetchLimits, ImageFetchError, fetch, image_digest, new_client

if TYPE_CHECKING:
    from lookalike.config import Settings

# RELINK: same pixels and fields, images moved: keep the vectors, rewrite the references.
EMBED, UNCHANGED, RELINK, FAILED = "embed", "unchanged", "relink", "failed"
# The image model's resize (ImagePreprocessor.resize: {"short_side", "interpolation"}), or None
# (CLIP's processor resizes itself).
Resize = dict[str, Any] | None


def product_to_json(p: Product) -> str:
    return json.dumps(p.to_dict(), sort_keys=True, default=str)


def product_from_json(s: str) -> Product:
    d = json.loads(s)
    d["images"] = tuple(d.get("images") or ())
    return Product(**d)


def _columns() -> dict[str, list[Any]]:
    return {k: [] for k in ("row", "product_id", "product", "content_hash", "status", "reason",
                            "height", "width",
                            "n_images", "image_index", "text", "pixels", "phash")}


def read_images(product: Product, limits: FetchLimits, client: Any = None) -> list[bytes] | str:
    """Every image's bytes, or the reason one could not be read."""
    try:
        return [fetch(ref, limits, client) for ref in product.images]
    except ImageFetchError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - one odd image must never stop the job
        return f"{exc.__class__.__name__}: {exc}"


def prepare_product(product: Product, stored_hash: str, blobs: list[bytes] | str,
                    resize: Resize, relink: bool = False, hashes: list[str] | None = None
                    ) -> tuple[str, str, str, list[np.ndarray]]:
    """(status, content_hash, reason, per-image RGB uint8 arrays) for one product and its image
    bytes. `hashes`, if given, receives each embedded image's perceptual hash (lookalike/variants.py).

    The content hash needs every image's bytes, so images are read first; decoding and the
    resize only happen for products whose hash changed, which keeps a re-run over an unchanged
    catalogue fast. The resize is the image model's own first step, in PIL as the router does
    it (lookalike.images.resize_short_side); the rest of the model's preprocessing (crop,
    normalise) runs in the image stage, which has torch loaded anyway. So prepare actors never
    import torch (on 2 cores two more torch imports were seconds of the warm-up) and send uint8
    pixels, a quarter of the float32 tensor's bytes.
    """
    from lookalike.images import InvalidImageError, decode_image, resize_short_side

    if isinstance(blobs, str):
        return FAILED, "", blobs, []
    content_hash = product.content_hash(tuple(image_digest(b) for b in blobs))
    if stored_hash and stored_hash == content_hash:
        return (RELINK if relink else UNCHANGED), content_hash, "", []
    images = []
    for ref, data in zip(product.images, blobs):
        try:
            images.append(decode_image(data))
        except InvalidImageError as exc:
            return FAILED, content_hash, f"{ref}: {exc}", []
    if hashes is not None:
        from lookalike.variants import phash_hex

        hashes.extend(phash_hex(img) for img in images)
    shrunk = [resize_short_side(img, resize["short_side"], resize["interpolation"]) if resize else img
              for img in images]
    return EMBED, content_hash, "", [np.asarray(img.convert("RGB"), dtype=np.uint8) for img in shrunk]


def prepare_batch(batch: dict[str, np.ndarray], *, limits: FetchLimits, resize: Resize,
                  pool: ThreadPoolExecutor | None = None, client: Any = None) -> dict[str, np.ndarray]:
    """Product rows -> image rows (plus one marker row per skipped product).

    Images are read on `pool`'s threads: reads wait on disks and CDNs, not on the CPU, and a
    batch of URLs fetched one by one would leave the embedders idle.
    """
    products = [product_from_json(str(p)) for p in batch["product"]]
    own = client is None
    client = client or new_client(limits)
    try:
        reads = list((pool.map if pool else map)(lambda p: read_images(p, limits, client), products))
    finally:
        if own:
            client.close()
    out = _columns()
    relinks = batch.get("relink", np.zeros(len(products), dtype=bool))
    for row, pid, pjson, stored, relink, product, blobs in zip(
            batch["row"], batch["product_id"], batch["product"], batch["stored_hash"], relinks,
            products, reads):
        hashes: list[str] = []
        try:
            status, chash, reason, pixels = prepare_product(product, str(stored or ""), blobs,
                                                            resize, bool(relink), hashes)
        except Exception as exc:  # noqa: BLE001 - one odd image must never stop the job
            status, chash, reason, pixels = FAILED, "", f"{exc.__class__.__name__}: {exc}", []
        entries = pixels if status == EMBED else [np.zeros((0, 0, 3), np.uint8)]
        hashes += [""] * (len(entries) - len(hashes))
        for i, px in enumerate(entries):
            out["row"].append(int(row))
            out["product_id"].append(str(pid))
            out["product"].append(str(pjson))
            out["content_hash"].append(chash)
            out["status"].append(status)
            out["reason"].append(reason)
            out["n_images"].append(len(entries))
            out["image_index"].append(i if status == EMBED else -1)
            # Text is embedded once per product, on its first image row.
            out["text"].append(product.text() if status == EMBED and i == 0 else "")
            out["height"].append(px.shape[0])
            out["width"].append(px.shape[1])
            out["pixels"].append(px.tobytes())
            out["phash"].append(hashes[i])
    cols: dict[str, np.ndarray] = {}
    for k, v in out.items():
        if k in ("row", "n_images", "image_index", "height", "width"):
            cols[k] = np.asarray(v, dtype=np.int64)
        else:
            arr = np.empty(len(v), dtype=object)
            arr[:] = v
            cols[k] = arr
    return cols


class PrepareStage:
    """Actor: read, hash, decode and resize. An actor rather than tasks because a task's worker
    process may be reaped whenever the stream pauses, and every new one pays its imports and
    its HTTP connections again."""

    def __init__(self, limits: FetchLimits, resize: Resize, io_threads: int = 8) -> None:
        self.limits, self.resize = limits, resize
        self.pool = ThreadPoolExecutor(io_threads, thread_name_prefix="image-read")
        self.client = new_client(limits)  # thread-safe; connections kept alive across batches

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return prepare_batch(batch, limits=self.limits, resize=self.resize, pool=self.pool,
                             client=self.client)


class _LazyStage:
    """The model loads on the first batch that needs it, so a re-run over an unchanged
    catalogue starts no model at all. `dim` is known up front (the driver probed it) so skipped
    rows get their zero placeholder vectors without the model.

    `load_now` (the driver found products that must be embedded): the model loads in a thread
    from the start instead. Loaded on the first batch, the image model waited for the prepare
    actors' start-up and first photos, and the text model for the image stage's first output:
    three start-ups in a row (4-7 s of a 2-core box's warm-up)."""

    def __init__(self, settings: Settings, num_threads: int, dim: int,
                 load_now: bool = False) -> None:
        self.settings, self.num_threads, self.dim = settings, num_threads, dim
        self._embedder: Any = None
        self._loading = ThreadPoolExecutor(1).submit(self._make) if load_now else None

    def _make(self) -> Any:
        raise NotImplementedError

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            # A load that failed in the thread raises here, on the batch that needed it.
            self._embedder = self._loading.result() if self._loading else self._make()
        return self._embedder


class ImageStage(_LazyStage):
    """Actor: embeds the `pixels` of rows that need it with ImageEmbedder.__call__."""

    def _make(self) -> Any:
        from lookalike.embedding.factory import image_embedder

        return image_embedder(self.settings, num_threads=self.num_threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raw, heights, widths = batch.pop("pixels"), batch.pop("height"), batch.pop("width")
        todo = np.asarray([s == EMBED for s in batch["status"]], dtype=bool)
        vectors = np.zeros((len(raw), self.dim), dtype=np.float32)
        if todo.any():
            images = [np.frombuffer(p, dtype=np.uint8).reshape(h, w, 3)
                      for p, h, w in zip(raw[todo], heights[todo], widths[todo])]
            # The image deployment's own call: the model's preprocessing (its resize is the
            # identity on these, prepare did it), then the model.
            vectors[todo] = self.embedder.embed(images)
        batch["image_vector"] = vectors
        return batch


class TextStage(_LazyStage):
    """Actor: embeds each changed product's text once (on its first image row)."""

    def _make(self) -> Any:
        from lookalike.embedding.factory import text_embedder

        return text_embedder(self.settings, num_threads=self.num_threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = batch.pop("text")
        todo = np.asarray([s == EMBED and i == 0
                           for s, i in zip(batch["status"], batch["image_index"])], dtype=bool)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        if todo.any():
            vectors[todo] = self.embedder({"text": texts[todo]})["text_vector"]
        batch["text_vector"] = vectors
        return batch


def probe_models(settings: Settings) -> dict[str, Any]:
    """Versions, dims and the image model's resize (for the prepare stage) of the configured
    models (run once as a short-lived Ray task, so the driver never loads torch)."""
    from lookalike.embedding.factory import image_embedder, text_embedder

    image, text = image_embedder(settings, num_threads=1), text_embedder(settings, num_threads=1)
    return {"model_version": f"{image.version}|{text.version}", "image_dim": image.dim,
            "text_dim": text.dim, "image_resize": image.preprocess.resize}
