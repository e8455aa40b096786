import json
import logging
import multiprocessing
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from lookalike.config import Settings

KEY = "a-long-enough-admin-key"


def test_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOOKALIKE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LOOKALIKE_PORT", "8123")
    monkeypatch.setenv("LOOKALIKE_MILVUS_URI", "http://milvus:19530")
    monkeypatch.setenv("LOOKALIKE_ADMIN_KEY", KEY)
    s = Settings()
    assert (s.data_dir, s.port, s.admin_key.get_secret_value()) == (tmp_path, 8123, KEY)
    assert not s.embedded and s.resolved_milvus_uri == "http://milvus:19530"


@pytest.mark.parametrize("bad", [{"port": 0}, {"milvus_uri": "milvus:19530"}, {"index_type": "LSH"},
                                 {"collection": "bad-name"}, {"lite_port": 8000, "port": 8000}])
def test_bad_values_fail_fast(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_generated_admin_key_is_stable_and_private(tmp_path: Path) -> None:
    a = Settings(data_dir=tmp_path).resolved_admin_key()
    b = Settings(data_dir=tmp_path).resolved_admin_key()
    assert isinstance(a, SecretStr) and a == b and len(a.get_secret_value()) >= 24
    assert (tmp_path / "admin.key").stat().st_mode & 0o777 == 0o600


def _resolve_key(data_dir: Path, barrier, out) -> None:
    barrier.wait()
    try:
        out.put(Settings(data_dir=data_dir).resolved_admin_key().get_secret_value())
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a failure
        out.put(f"error: {exc!r}")


def test_processes_racing_to_create_the_key_all_get_one_key(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    n = 8
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_resolve_key, args=(tmp_path, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    keys = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert len(set(keys)) == 1, keys
    assert len(keys[0]) >= 16 and not keys[0].startswith("error")
    assert (tmp_path / "admin.key").read_text().strip() == keys[0]
    assert (tmp_path / "admin.key").stat().st_mode & 0o777 == 0o600
    assert list(tmp_path.iterdir()) == [tmp_path / "admin.key"]  # no temp files left behind


@pytest.mark.parametrize("content", ["", "  \n", "short-key"])
def test_an_empty_or_short_key_file_is_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "admin.key").write_text(content)
    (tmp_path / "admin.key").chmod(0o600)
    with pytest.raises(ValueError, match="admin key file"):
        Settings(data_dir=tmp_path).resolved_admin_key()


def test_a_short_configured_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError, match="at least 16") as err:
        Settings(admin_key="test-admin-key")  # 14 characters
    assert "test-admin-key" not in str(err.value)
    with pytest.raises(ValidationError, match="mask"):  # a dumped secret passed on by mistake
        Settings(**Settings(admin_key=KEY).model_dump(mode="json"))


def test_the_key_never_shows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    configured = Settings(data_dir=tmp_path, admin_key=KEY)
    generated = Settings(data_dir=tmp_path)
    secret = generated.resolved_admin_key()
    with caplog.at_level(logging.INFO):
        logging.getLogger("lookalike.test").info("settings %s %r %s", configured, configured, secret)
    shown = [repr(configured), str(configured), str(configured.model_dump()),
             json.dumps(configured.model_dump(mode="json")), configured.model_dump_json(),
             repr(secret), str(secret), caplog.text]
    for text in shown:
        assert KEY not in text and secret.get_secret_value() not in text
    assert configured.admin_key.get_secret_value() == KEY


@pytest.mark.parametrize("bad", [{"model_runtime": "onnx", "device": "cuda"},
                                 {"text_quantize": "int8", "model_runtime": "torch"},
                                 {"text_quantize": "int8", "device": "cuda"},  # auto: torch
                                 {"model_runtime": "openvino"},
                                 {"write_flush_rows": 0}, {"write_flush_idle_s": -1}])
def test_bad_runtime_and_flush_settings_fail_fast(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_model_runtime_from_env_and_cache_under_the_data_dir(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.setenv("LOOKALIKE_MODEL_RUNTIME", "onnx")
    monkeypatch.setenv("LOOKALIKE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LOOKALIKE_MODEL_CACHE_DIR", raising=False)  # tests/conftest.py sets one
    s = Settings()
    assert s.model_runtime == "onnx" and s.resolved_model_cache_dir == tmp_path / "models"
    assert Settings(model_cache_dir=tmp_path / "m").resolved_model_cache_dir == tmp_path / "m"
@pytest.mark.parametrize(("runtime", "device", "resolved"), [
    ("auto", "cpu", "onnx"), ("auto", "cuda", "torch"), ("torch", "cpu", "torch"),
    ("onnx", "cpu", "onnx"), ("torch", "cuda", "torch")])
def test_the_default_runtime_is_onnx_on_the_cpu_and_torch_on_cuda(
        runtime: str, device: str, resolved: str) -> None:
    s = Settings(model_runtime=runtime, device=device)
    assert s.resolved_model_runtime == resolved
    assert Settings().model_runtime == "auto"


def test_shards_and_replicas_need_a_real_milvus(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="need a real Milvus"):
        Settings(milvus_shards=2)
    with pytest.raises(ValidationError, match="need a real Milvus"):
        Settings(milvus_replicas=2)
    monkeypatch.setenv("LOOKALIKE_MILVUS_URI", "http://milvus-proxy:19530")
    monkeypatch.setenv("LOOKALIKE_MILVUS_SHARDS", "2")
    monkeypatch.setenv("LOOKALIKE_MILVUS_REPLICAS", "2")
    s = Settings()
    assert (s.milvus_shards, s.milvus_replicas) == (2, 2)


def test_s3_media_secrets_never_show() -> None:
    s = Settings(media_backend="s3", media_s3_access_key="AKIA-visible-nowhere",
                 media_s3_secret_key="secret-visible-nowhere")
    for text in (repr(s), str(s.model_dump()), s.model_dump_json()):
        assert "visible-nowhere" not in text


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_key_file_other_users_may_read_stops_start_up(tmp_path: Path, mode: int) -> None:
    key_file = tmp_path / "admin.key"
    key_file.write_text("an-admin-key-of-enough-length")
    key_file.chmod(mode)
    with pytest.raises(ValueError, match=f"chmod 600 {key_file}"):
        Settings(data_dir=tmp_path).resolved_admin_key()
    key_file.chmod(0o600)
    assert Settings(data_dir=tmp_path).resolved_admin_key().get_secret_value() == \
        "an-admin-key-of-enough-length"


def test_the_data_directory_is_made_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "deep" / "data"
    Settings(data_dir=data_dir).resolved_admin_key()
    assert data_dir.stat().st_mode & 0o777 == 0o700


def test_an_existing_open_data_directory_is_left_as_is_with_a_warning(tmp_path: Path) -> None:
    from lookalike.config import private_dir

    tmp_path.chmod(0o755)
    assert private_dir(tmp_path) == (f"data directory {tmp_path} is open to other users (mode "
                                     f"0755): run `chmod 700 {tmp_path}`")
    assert tmp_path.stat().st_mode & 0o777 == 0o755  # not changed behind the owner's back
    tmp_path.chmod(0o700)
    assert private_dir(tmp_path) is None


def test_secrets_as_the_mask_of_a_dump_are_refused() -> None:
    for name in ("media_s3_access_key", "media_s3_secret_key", "milvus_token"):
        with pytest.raises(ValidationError, match="mask"):
            Settings(**{name: "**********"})
