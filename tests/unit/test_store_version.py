"""An embedded milvus-lite of a version the search patch does not know is said loudly, at every
start-up surface (the ready banner, `lookalike status`, GET /v1/info's `warnings`), and never
for an external Milvus."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike import status
from lookalike.banner import ready_banner
from lookalike.config import Settings
from lookalike.info import store_warnings
from lookalike.ports import free_port
from lookalike.runfile import RunRecord
from lookalike.store import lite_version

RUN = RunRecord(pid=1, command="demo", app_url="http://127.0.0.1:8000",
                dashboard_url="http://127.0.0.1:8265", metrics_url="http://127.0.0.1:8080/metrics",
                gcs_address="127.0.0.1:6379", collection="products", started_at="now")


@pytest.fixture
def embedded(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, lite_port=free_port())


def test_the_installed_version_warns_nothing(embedded: Settings) -> None:
    assert lite_version.installed_version() == lite_version.SUPPORTED_VERSION
    assert store_warnings(embedded) == []
    assert "WARNING" not in ready_banner(RUN, products=1, admin_key_at="data/admin.key", warnings=[])


@pytest.mark.parametrize("other", ["3.2.3", "2.5.1", None])
def test_another_version_is_said_at_every_start_up_surface(
        monkeypatch: pytest.MonkeyPatch, embedded: Settings, other: str | None) -> None:
    monkeypatch.setattr(lite_version, "installed_version", lambda: other)
    (warning,) = store_warnings(embedded)
    assert f"is not {lite_version.SUPPORTED_VERSION}" in warning
    assert f"milvus-lite=={lite_version.SUPPORTED_VERSION}" in warning
    banner = ready_banner(RUN, products=1, admin_key_at="data/admin.key", warnings=store_warnings(embedded))
    assert any(row.strip().startswith("WARNING:") and warning in row
               for row in banner.splitlines()), banner
    text, _ = status.report(embedded)  # nothing runs: the store line says "not running"
    assert any(row.strip().startswith("WARNING:") and warning in row
               for row in text.splitlines()), text


def test_an_external_milvus_gets_no_lite_warning(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setattr(lite_version, "installed_version", lambda: "3.2.3")
    assert store_warnings(Settings(data_dir=tmp_path, milvus_uri="http://milvus:19530")) == []
