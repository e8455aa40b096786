"""The S3 media backend against a real S3-compatible server over loopback HTTP.

Why moto: docker-compose.yml runs MinIO, but no MinIO binary (nor any Docker engine) is
installable on the machines that run this suite; moto's ThreadedMotoServer (moto[server] on
PyPI) is an S3 server in a thread that speaks the same HTTP API, so boto3 goes through its
real request signing, transport and error paths. Two routers with their own data directories
stand for two replicas on two nodes: what one stores, the other serves.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import SecretStr

from lookalike.api import create_api
from lookalike.config import Settings
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.media import MEDIA, open_media
from lookalike.media_s3 import S3Media
from lookalike.ports import free_port
from lookalike.search import SearchService
from lookalike.store import MilvusStore
from tests.checks import all_of

ADMIN = "s3-test-admin-key-0123"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_settings(settings: Settings, endpoint: str, node: Path, **extra: object) -> Settings:
    # model_copy does not validate: secrets go in as SecretStr.
    return settings.model_copy(update={
        "data_dir": node, "media_backend": "s3", "media_s3_endpoint": endpoint,
        "media_s3_bucket": "lookalike-test", "media_s3_access_key": SecretStr("test-access"),
        "media_s3_secret_key": SecretStr("test-secret"), "admin_key": SecretStr(ADMIN), **extra})


def photo(rgb: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), rgb).save(buf, "PNG")
    return buf.getvalue()


def keys(media: S3Media) -> set[str]:
    listed = media.client.list_objects_v2(Bucket=media.bucket, Prefix=media.prefix)
    return {o["Key"][len(media.prefix):] for o in listed.get("Contents", [])}


def test_a_photo_saved_on_one_node_is_read_on_another(settings: Settings, s3_endpoint: str,
                                                      tmp_path: Path) -> None:
    one = open_media(s3_settings(settings, s3_endpoint, tmp_path / "node1"))
    two = open_media(s3_settings(settings, s3_endpoint, tmp_path / "node2"))
    assert isinstance(one, S3Media) and isinstance(two, S3Media)
    data = photo((10, 20, 30))
    ref = one.save(data)
    assert ref.startswith(MEDIA) and two.owns(ref) and two.locate(ref) == data
    assert not (tmp_path / "node1").exists()  # nothing on the node's disk
    assert two.locate(MEDIA + "0" * 64 + ".png") is None
    # Just written: removal spares it (an upload of the same photo may be in flight).
    assert two.remove_unreferenced([ref], lambda asked: set()) == []
    assert two.locate(ref) == data
    two.grace_s = 0
    assert two.remove_unreferenced([ref], lambda asked: {ref} & set(asked)) == []  # still listed
    assert two.remove_unreferenced([ref, "catalog:x.png"], lambda asked: set()) == [ref]
    assert one.locate(ref) is None and ref[len(MEDIA):] not in keys(one)


def router(settings: Settings, embedders: tuple[ImageEmbedder, TextEmbedder],
           store: MilvusStore) -> TestClient:
    ie, te = embedders

    async def embed_image(img: Image.Image):
        return ie.embed([img])[0]

    async def embed_text(text: str):
        return te.embed([text])[0]

    service = SearchService(store=store, embed_image=embed_image, embed_text=embed_text,
                            media_dir=settings.media_dir, media=open_media(settings))
    return TestClient(create_api(service, settings), raise_server_exceptions=False)


def test_two_routers_on_two_nodes_serve_each_others_uploads(
        settings: Settings, s3_endpoint: str, tmp_path: Path,
        embedders: tuple[ImageEmbedder, TextEmbedder]) -> None:
    ie, te = embedders
    store = MilvusStore.from_settings(settings, image_dim=ie.dim, text_dim=te.dim)
    store.ensure_collection()
    try:
        first = s3_settings(settings, s3_endpoint, tmp_path / "node1", media_s3_grace_s=0)
        second = s3_settings(settings, s3_endpoint, tmp_path / "node2", media_s3_grace_s=0)
        a, b = router(first, embedders, store), router(second, embedders, store)
        red, blue = photo((200, 0, 0)), photo((0, 0, 200))
        auth = {"Authorization": f"Bearer {ADMIN}"}
        put = a.put("/v1/products/p1", headers=auth, data={"metadata": '{"title": "red"}'},
                    files=[("image", ("r.png", red, "image/png")),
                           ("image", ("b.png", blue, "image/png"))])
        assert put.status_code == 200, put.text
        stored = store.get(["p1"])["p1"].product.images
        all_of(stored, lambda r: r.startswith(MEDIA), "stored images")  # logical, no node's path
        for n, data in enumerate((red, blue)):
            got = b.get(f"/v1/products/p1/images/{n}")
            assert got.status_code == 200 and got.content == data
            assert got.headers["content-type"] == "image/png"
        media = open_media(first)
        assert {r[len(MEDIA):] for r in stored} <= keys(media)
        # Replaced through the other router: the photo nobody lists any more goes.
        again = b.put("/v1/products/p1", headers=auth, data={"metadata": '{"title": "red"}'},
                      files={"image": ("r.png", red, "image/png")})
        assert again.status_code == 200, again.text
        assert stored[1][len(MEDIA):] not in keys(media)
        assert b.delete("/v1/products/p1", headers=auth).status_code == 204
        assert stored[0][len(MEDIA):] not in keys(media)
        assert a.get("/v1/products/p1/images/0").status_code == 404
    finally:
        store.drop()
        store.close()
