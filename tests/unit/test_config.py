from pathlib import Path

import pytest
from pydantic import ValidationError

from lookalike.config import Settings


def test_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOOKALIKE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LOOKALIKE_PORT", "8123")
    monkeypatch.setenv("LOOKALIKE_MILVUS_URI", "http://milvus:19530")
    monkeypatch.setenv("LOOKALIKE_ADMIN_KEY", "s3cret")
    s = Settings()
    assert (s.data_dir, s.port, s.admin_key) == (tmp_path, 8123, "s3cret")
    assert not s.embedded and s.resolved_milvus_uri == "http://milvus:19530"


@pytest.mark.parametrize("bad", [{"port": 0}, {"milvus_uri": "milvus:19530"}, {"index_type": "LSH"},
                                 {"collection": "bad-name"}, {"lite_port": 8000, "port": 8000}])
def test_bad_values_fail_fast(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_generated_admin_key_is_stable_and_private(tmp_path: Path) -> None:
    a = Settings(data_dir=tmp_path).resolved_admin_key()
    b = Settings(data_dir=tmp_path).resolved_admin_key()
    assert a == b and len(a) >= 24
    assert (tmp_path / "admin.key").stat().st_mode & 0o077 == 0
