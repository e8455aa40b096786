"""build_app's wiring, read off the bound graph (binding starts nothing: no Ray needed)."""

from __future__ import annotations

from pydantic import SecretStr

from lookalike.app import serve_app
from lookalike.config import Settings

KEY = "serve-app-admin-key"


def test_only_the_router_receives_the_admin_key() -> None:
    router = serve_app.build_app({"settings": {"admin_key": KEY}})._bound_deployment
    image, text, router_settings = router.init_args
    for embedder in (image, text):
        embedder_settings = embedder._bound_deployment.init_args[0]
        assert "admin_key" not in embedder_settings and KEY not in repr(embedder_settings)
    assert isinstance(router_settings["admin_key"], SecretStr)
    assert router_settings["admin_key"].get_secret_value() == KEY
    assert KEY not in repr(router_settings)


SECRETS = {"admin_key": KEY, "media_backend": "s3", "media_s3_access_key": "s3-access-AKIA1234",
           "media_s3_secret_key": "s3-secret-wJalrXUtnFEMI", "milvus_uri": "http://milvus:19530",
           "milvus_token": "root:milvus-token-value"}


SECRET_NAMES = ("admin_key", "milvus_token", "media_s3_access_key", "media_s3_secret_key")


def plain(secret: object) -> object:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def test_every_secret_reaches_the_router_as_its_value_and_never_shows() -> None:
    original = Settings(**SECRETS)
    router = serve_app.build_app({"settings": SECRETS})._bound_deployment
    image, text, router_settings = router.init_args
    rebuilt = Settings(**router_settings)  # what the router replica's __init__ does
    for name in SECRET_NAMES:  # the values, not "**********" (boto3 was handed the mask)
        assert plain(getattr(rebuilt, name)) == plain(getattr(original, name)), name
    assert rebuilt.media_s3_access_key.get_secret_value() == "s3-access-AKIA1234"
    embedder_args = [e._bound_deployment.init_args for e in (image, text)]
    for args in embedder_args:  # the embedders rebuild their settings, and hold no secret
        embedder = Settings(**args[0])
        assert all(not plain(getattr(embedder, name)) for name in SECRET_NAMES)
    shown = " ".join(f"{x!r} {x!s}" for x in (router.init_args, router_settings,
                                                      *embedder_args))
    for secret in SECRETS.values():
        if secret not in ("s3", "http://milvus:19530"):
            assert secret not in shown
