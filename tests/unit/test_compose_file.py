"""docker-compose.yml, checked without a Docker engine: valid by the Compose specification's own
JSON schema (the copy in the docker-compose wheel that `make setup` downloads into the venv)
after compose's variable interpolation, and
holding what a production deployment needs (health checks, ordered start, auth, limits)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lookalike.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
# Downloaded by `make setup` (Makefile: COMPOSE_SPEC_WHEEL), not installed.
SCHEMA_WHEELS = Path(sys.prefix) / "share" / "compose-spec"
SCHEMA_MEMBER = "compose/config/compose_spec.json"
# Compose's interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, ${NAME?err}.
VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SECRET_WORDS = ("KEY", "TOKEN", "PASSWORD", "SECRET", "USER")
ONE_SHOT = "on-failure"  # restart policy of the services that run once and finish
MILVUS_COMPONENTS = ("rootcoord", "querycoord", "datacoord", "querynode", "datanode",
                     "indexnode", "proxy")


class Unset(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"] or ""
        have = env.get(name)
        empty = have is None or (op is not None and op.startswith(":") and have == "")
        if op in (":?", "?") and empty:
            raise Unset(f"{name}: {arg}")
        if op in (":-", "-") and empty:
            return arg
        return have or ""

    return VAR.sub(sub, value)


def raw_text() -> str:
    return COMPOSE.read_text()


def variables() -> dict[str, set[str]]:
    """name -> the operators it is used with (None: plain ${NAME})."""
    out: dict[str, set[str]] = {}
    for m in VAR.finditer(raw_text()):
        out.setdefault(m["name"], set()).add(m["op"])
    return out


def credentials() -> list[str]:
    return sorted(n for n in variables() if any(w in n for w in SECRET_WORDS))


def full_env() -> dict[str, str]:
    return {name: f"{name.lower()}-value-0123456789" for name in credentials()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load(raw_text()), full_env())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def command(service: dict[str, Any]) -> str:
    cmd = service.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def is_one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == ONE_SHOT


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    wheels = sorted(SCHEMA_WHEELS.glob("docker_compose-*.whl"))
    if not wheels:  # a failure, never a skip: the check would silently not run
        pytest.fail(f"the Compose schema is missing from {SCHEMA_WHEELS}: run `make setup`")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        return json.loads(wheel.read(SCHEMA_MEMBER))


def test_valid_by_the_compose_specification(compose: dict[str, Any],
                                            schema: dict[str, Any]) -> None:
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def test_the_schema_catches_a_broken_file(compose: dict[str, Any],
                                          schema: dict[str, Any]) -> None:
    """The check above can fail: a misspelt key and a bad condition are refused."""
    broken = json.loads(json.dumps(compose))
    broken["services"]["etcd"]["healthcheck"]["tset"] = ["CMD", "true"]
    broken["services"]["ray-worker"]["depends_on"]["ray-head"]["condition"] = "service_ready"
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(broken))) >= 2


def test_every_long_running_service_is_health_checked_and_restarts(
        services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        assert svc.get("restart") in ("unless-stopped", "always", ONE_SHOT), name
        if is_one_shot(svc):
            continue
        test = svc.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        assert not svc["healthcheck"].get("disable"), name


def test_milvus_components_check_their_healthz(services: dict[str, dict[str, Any]]) -> None:
    milvus = {n: s for n, s in services.items() if "milvus" in s.get("image", "")}
    found = {c for c in MILVUS_COMPONENTS for s in milvus.values() if c in command(s)}
    assert found == set(MILVUS_COMPONENTS)
    for name, svc in milvus.items():
        assert "http://localhost:9091/healthz" in svc["healthcheck"]["test"], name


def test_start_order_waits_for_health(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: a bare list waits for nothing"
        for dep, how in deps.items():
            target = services[dep]
            want = "service_completed_successfully" if is_one_shot(target) else "service_healthy"
            assert how.get("condition") == want, f"{name} -> {dep}"
    # Nothing talks to Milvus before its proxy is healthy, nor to Ray before the head is.
    for name in ("serve-deploy",):
        assert services[name]["depends_on"]["milvus-proxy"]["condition"] == "service_healthy"
    assert services["ray-worker"]["depends_on"]["ray-head"]["condition"] == "service_healthy"


def test_ray_runs_in_the_foreground_with_token_auth_and_sized_nodes(
        services: dict[str, dict[str, Any]]) -> None:
    ray_services = {n: s for n, s in services.items()
                    if re.search(r"\b(ray|serve) ", command(s))}
    assert {"ray-head", "ray-worker", "serve-deploy", "ingest"} <= set(ray_services)
    for name, svc in ray_services.items():
        env = svc["environment"]
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"], name
    for name in ("ray-head", "ray-worker"):
        cmd = command(services[name])
        assert "ray start" in cmd and "--block" in cmd and "tail -f" not in cmd, name
        cpus = re.search(r"--num-cpus=(\d+)", cmd)
        assert cpus, f"{name}: Ray would advertise every host core"
        limit = float(services[name]["deploy"]["resources"]["limits"]["cpus"])
        assert int(cpus[1]) <= limit, name
    assert "--num-cpus=0" in command(services["ray-head"])


def test_limits_on_every_service(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("cpus") and limits.get("memory"), name


def test_no_credential_has_a_default() -> None:
    names = credentials()
    assert {"LOOKALIKE_ADMIN_KEY", "RAY_AUTH_TOKEN", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD",
            "MILVUS_ROOT_PASSWORD"} <= set(names)
    for name in names:
        assert variables()[name] == {":?"}, f"{name} must be required (${{{name}:?...}})"
    assert "minioadmin" not in raw_text().lower()
    data = yaml.safe_load(raw_text())
    for env in (data["x-milvus"]["environment"], data["x-lookalike"]["environment"]):
        for key, value in env.items():
            if any(w in key for w in SECRET_WORDS) and key != "RAY_AUTH_MODE":
                assert "${" in str(value), f"{key} is written in the file"
    # Compose refuses to start with any one of them unset.
    for missing in names:
        env = {k: v for k, v in full_env().items() if k != missing}
        with pytest.raises(Unset, match=missing):
            interpolate(yaml.safe_load(raw_text()), env)


def test_milvus_authorization_is_on_and_lookalike_signs_in(
        services: dict[str, dict[str, Any]]) -> None:
    proxy = services["milvus-proxy"]["environment"]
    assert proxy["COMMON_SECURITY_AUTHORIZATIONENABLED"] == "true"
    app = services["ray-worker"]["environment"]
    assert app["LOOKALIKE_MILVUS_TOKEN"] == "root:" + proxy["COMMON_SECURITY_DEFAULTROOTPASSWORD"]
    assert app["LOOKALIKE_MEDIA_S3_SECRET_KEY"] == services["minio"]["environment"][
        "MINIO_ROOT_PASSWORD"]


def test_the_app_settings_are_real_and_ask_for_shards_and_replicas(
        services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    env = services["ray-worker"]["environment"]
    for key, value in env.items():
        if key.startswith("LOOKALIKE_"):
            monkeypatch.setenv(key, str(value))
    s = Settings()
    assert (s.milvus_shards, s.milvus_replicas) == (2, 2)
    assert s.media_backend == "s3" and not s.embedded
    # Each in-memory replica needs a query node of its own.
    querynodes = [n for n, svc in services.items() if "querynode" in command(svc)]
    assert len(querynodes) >= s.milvus_replicas
    known = set(Settings.model_fields)
    unknown = [k for k in env if k.startswith("LOOKALIKE_")
               and k.removeprefix("LOOKALIKE_").lower() not in known]
    assert not unknown, f"not a setting (ignored silently): {unknown}"


def test_env_example_lists_every_credential_empty_and_env_is_ignored() -> None:
    example = (ROOT / ".env.example").read_text()
    assigned = dict(re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", example, re.MULTILINE))
    assert sorted(assigned) == credentials()
    assert all(v == "" for v in assigned.values()), "no real values in the example"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    if shutil.which("git") and (ROOT / ".git").exists():
        ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", ".env"])
        assert ignored.returncode == 0, ".env must be git-ignored"
        example_ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q",
                                          ".env.example"])
        assert example_ignored.returncode == 1


def test_the_ingest_runs_as_a_ray_job(services: dict[str, dict[str, Any]]) -> None:
    cmd = command(services["ingest"])
    assert "ray job submit" in cmd and "ingest_job.py" in cmd
    assert (ROOT / "ingest_job.py").is_file()
