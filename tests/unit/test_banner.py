"""The ready banner's lines: the Ray dashboard and exactly how to sign in, metrics, Grafana."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.banner import ready_banner, watch_lines
from lookalike.cli import admin_key_source
from lookalike.config import Settings
from lookalike.runfile import RunRecord

RUN = RunRecord(pid=1, command="demo", app_url="http://127.0.0.1:8000",
                dashboard_url="http://127.0.0.1:8265", metrics_url="http://127.0.0.1:8080/metrics",
                gcs_address="127.0.0.1:6379", collection="products", started_at="now")


@pytest.fixture(autouse=True)
def no_ray_auth_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)


def line(text: str, label: str) -> str:
    (found,) = [row for row in text.splitlines() if row.strip().startswith(label)]
    return found


def test_banner_names_the_dashboard_and_the_default_token_file() -> None:
    text = ready_banner(RUN, products=2000, admin_key_at="/srv/data/admin.key")
    assert "http://127.0.0.1:8265" in line(text, "Ray dashboard:")
    assert str(Path.home() / ".ray" / "auth_token") in line(text, "sign in:")
    assert "ray get-auth-token" in text
    assert "http://127.0.0.1:8080/metrics" in line(text, "Prometheus scrape:")
    assert "(2000 products searchable)" in line(text, "lookalike is ready:")


def test_sign_in_follows_the_token_ray_will_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/etc/ray/token")
    assert "/etc/ray/token" in line("\n".join(watch_lines(RUN)), "sign in:")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret-value")
    signin = line("\n".join(watch_lines(RUN)), "sign in:")
    assert "RAY_AUTH_TOKEN environment variable" in signin
    assert "secret-value" not in signin  # the banner names the token's place, never the token


def test_no_sign_in_when_token_auth_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert "no sign-in" in line("\n".join(watch_lines(RUN)), "sign in:")


def test_the_grafana_dashboard_file_it_names_exists() -> None:
    grafana = line("\n".join(watch_lines(RUN)), "Grafana dashboard:")
    path = Path(grafana.split(":", 1)[1].split("(")[0].strip())
    assert path.is_file() and path.name == "lookalike-dashboard.json"


def test_the_banner_says_where_the_admin_key_is_never_the_key(tmp_path: Path) -> None:
    generated = Settings(data_dir=tmp_path)
    key = generated.resolved_admin_key().get_secret_value()
    text = ready_banner(RUN, products=1, admin_key_at=admin_key_source(generated))
    assert str(tmp_path / "admin.key") in line(text, "admin key (PUT/DELETE):")
    assert key not in text
    configured = Settings(data_dir=tmp_path, admin_key="configured-admin-key-0123")
    text = ready_banner(RUN, products=1, admin_key_at=admin_key_source(configured))
    assert "LOOKALIKE_ADMIN_KEY" in line(text, "admin key (PUT/DELETE):")
    assert "configured-admin-key-0123" not in text
