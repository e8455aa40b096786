"""The whole app over real HTTP: a real local Ray Serve app, a real milvus-lite server, the
packaged models, and a small demo catalogue written by the same embedders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lookalike.catalog import demo, load_manifest
from lookalike.catalog.product import Product
from lookalike.config import Settings
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.indexing import embed_products
from lookalike.launch.front_proxy import FrontProxy
from lookalike.ports import free_port
from lookalike.store import MilvusStore
from lookalike.store.lite_server import LiteServer

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "e2e-admin-key-0123"
N_PRODUCTS = 60


@pytest.fixture(scope="package")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Product]]:
    manifest = demo.build(tmp_path_factory.mktemp("catalogue"), N_PRODUCTS, second_image_share=0.3)
    products, errors = load_manifest(manifest)
    assert not errors
    return manifest, products


@pytest.fixture(scope="package")
def app_settings(lite_server: LiteServer, tmp_path_factory: pytest.TempPathFactory,
                 catalogue: tuple[Path, list[Product]]) -> Settings:
    port = free_port()
    # The tests fetch image_urls from the app itself (loopback, its own port) and serve the
    # catalogue from its temporary folder.
    # The app's data dir is not the store's: it is given the session server's token.
    return Settings(data_dir=tmp_path_factory.mktemp("app"), lite_port=lite_server.port,
                    milvus_token=lite_server.token(), collection="e2e_products", port=port,
                    admin_key=ADMIN_KEY,
                    allow_private_image_urls=True, image_url_ports=(port,),
                    image_roots=(catalogue[0].parent,))


@pytest.fixture(scope="package")
def app(app_settings: Settings, catalogue: tuple[Path, list[Product]],
        ray_local: None) -> Iterator[tuple[str, FrontProxy | None]]:
    """The app's URL and the front proxy on it."""
    from ray import serve

    from lookalike.launch.serving import deploy, load_config, wait_ready

    ie, te = ImageEmbedder(), TextEmbedder()
    store = MilvusStore.from_settings(app_settings, image_dim=ie.dim, text_dim=te.dim)
    store.ensure_collection()
    store.upsert(embed_products(catalogue[1], image_embedder=ie, text_embedder=te))
    store.close()
    # From serve_config.yaml, as `serve run` and `lookalike serve` start it: the same replicas,
    # queue bounds and batching (the YAML is the one place they are set).
    settings = {**app_settings.model_dump(mode="json"),
                "admin_key": app_settings.admin_key.get_secret_value(),
                "milvus_token": app_settings.milvus_token.get_secret_value()}
    # With the front proxy on the app's port, as `lookalike serve` runs it.
    front = deploy(load_config(REPO / "serve_config.yaml", app_settings,
                               app_args={"settings": settings}), app_settings)
    url = f"http://127.0.0.1:{app_settings.port}"
    wait_ready(url)
    yield url, front
    if front is not None:
        front.stop()
    serve.shutdown()


@pytest.fixture(scope="package")
def app_url(app: tuple[str, FrontProxy | None]) -> str:
    return app[0]


@pytest.fixture
def client(app_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app_url, timeout=60) as c:
        yield c


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}
