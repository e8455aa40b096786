"""build_app's wiring, read off the bound graph (binding starts nothing: no Ray needed)."""

from __future__ import annotations

from pydantic import SecretStr

from lookalike.app import serve_app

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
