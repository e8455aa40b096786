"""Deployment options resolved exactly as Serve resolves them from each Serve config YAML.

Serve builds the app from code, then overrides each deployment with the YAML's `deployments:`
entries, taking `ray_actor_options` whole (ray.serve._private.application_state
.override_deployment_info, run by the controller for `serve run` and `serve deploy`). That is
how GPU options set in code were silently dropped; these tests run the same steps, without Ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray._common.utils import import_attr
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
from ray.serve._private.application_state import override_deployment_info
from ray.serve._private.build_app import build_app
from ray.serve._private.deploy_utils import deploy_args_to_deployment_info
from ray.serve.schema import ServeDeploySchema

from lookalike.config import Settings
from lookalike.deployments.device import NoGpuForReplica, check_device
from tests.checks import all_of

REPO = Path(__file__).resolve().parents[2]
EMBEDDERS = {"ImageEmbedderDeployment", "TextEmbedderDeployment"}


def resolve(config_file: str) -> dict[str, Any]:
    """{deployment name: DeploymentInfo} after the YAML's overrides, as the controller has it."""
    config = ServeDeploySchema.model_validate(yaml.safe_load((REPO / config_file).read_text()))
    (app_config,) = config.applications
    app = call_user_app_builder_with_args_if_necessary(import_attr(app_config.import_path),
                                                       app_config.args)
    built = build_app(app, name=app_config.name, default_runtime_env={})
    infos = {}
    for d in built.deployments:
        # What get_deploy_args hands the controller, minus the caller's job id (which would
        # start Ray to look up).
        d._deployment_config.version = "unit"
        infos[d.name] = deploy_args_to_deployment_info(
            deployment_name=d.name, app_name=app_config.name, deployer_job_id="unit",
            deployment_config_proto_bytes=d._deployment_config.to_proto_bytes(),
            replica_config_proto_bytes=d._replica_config.to_proto_bytes(),
            ingress=d.name == built.ingress_deployment_name)
    return override_deployment_info(infos, app_config)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_DATA_DIR", str(tmp_path))  # build_app writes the admin key
    monkeypatch.delenv("LOOKALIKE_DEVICE", raising=False)
    # import_path "lookalike.app.serve_app:build_app" resolves from a checkout as from a wheel.


def gpus(info: Any) -> float:
    return float(info.replica_config.ray_actor_options.get("num_gpus") or 0)


def test_gpu_config_gives_the_embedders_gpus_and_the_router_none() -> None:
    infos = resolve("serve_config.gpu.yaml")
    assert set(infos) == EMBEDDERS | {"SearchRouter"}
    all_of(EMBEDDERS, lambda name: gpus(infos[name]) > 0, "embedder deployments")
    assert gpus(infos["SearchRouter"]) == 0
    # Two embedders on one GPU: their shares must fit in it.
    assert sum(gpus(infos[name]) for name in EMBEDDERS) <= 1
    assert infos["ImageEmbedderDeployment"].deployment_config.user_config["max_batch_size"] >= 16
    assert not ray.is_initialized()


def test_cpu_config_gives_no_deployment_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_DEVICE", "cuda")  # code no longer adds GPUs for it either
    infos = resolve("serve_config.yaml")
    assert set(infos) == EMBEDDERS | {"SearchRouter"}
    assert [name for name, info in infos.items() if gpus(info)] == []
    assert infos["ImageEmbedderDeployment"].replica_config.ray_actor_options["num_cpus"] == 0.5
    assert not ray.is_initialized()


def test_both_configs_describe_the_same_app() -> None:
    cpu, gpu = (yaml.safe_load((REPO / f).read_text())
                for f in ("serve_config.yaml", "serve_config.gpu.yaml"))
    assert cpu["http_options"] == gpu["http_options"]
    (a,), (b,) = cpu["applications"], gpu["applications"]
    for key in ("name", "route_prefix", "import_path", "runtime_env"):
        assert a[key] == b[key], key
    assert [d["name"] for d in a["deployments"]] == [d["name"] for d in b["deployments"]]
    assert b["args"]["settings"]["device"] == "cuda" and "device" not in a["args"]["settings"]


def test_cuda_without_a_gpu_fails_fast_naming_the_gpu_config() -> None:
    with pytest.raises(NoGpuForReplica, match="serve_config.gpu.yaml"):
        check_device(Settings(device="cuda"), "ImageEmbedderDeployment", [])
    check_device(Settings(device="cuda"), "ImageEmbedderDeployment", ["0"])
    check_device(Settings(device="cpu"), "TextEmbedderDeployment", [])


@pytest.mark.parametrize("config_file", ["serve_config.yaml", "serve_config.gpu.yaml"])
def test_every_deployment_sheds_load_instead_of_queueing_without_bound(config_file: str) -> None:
    # -1 is Serve's "unbounded"; a bounded queue makes overload a quick 503 (Retry-After).
    infos = resolve(config_file)
    for name, info in infos.items():
        queued = info.deployment_config.max_queued_requests
        assert 0 < queued <= 1024, (name, queued)
        assert queued >= info.deployment_config.max_ongoing_requests, name


# -- one place for deployment options: the YAML ---------------------------------------------------

YAML_OWNS = {"num_replicas", "autoscaling_config", "ray_actor_options", "max_ongoing_requests",
             "max_queued_requests", "user_config", "placement_group_bundles",
             "placement_group_strategy", "max_replicas_per_node", "health_check_period_s",
             "health_check_timeout_s", "graceful_shutdown_timeout_s"}


def deployment_classes() -> dict[str, Any]:
    from lookalike.deployments.image_embedder import ImageEmbedderDeployment
    from lookalike.deployments.search_router import SearchRouter
    from lookalike.deployments.text_embedder import TextEmbedderDeployment

    return {d.name: d for d in (ImageEmbedderDeployment, TextEmbedderDeployment, SearchRouter)}


def test_the_decorators_set_no_option_the_yaml_owns() -> None:
    # What Serve itself records as set in code (`@serve.deployment(...)` or `.options(...)`).
    for name, d in deployment_classes().items():
        in_code = d._deployment_config.user_configured_option_names & YAML_OWNS
        assert not in_code, f"{name} sets {sorted(in_code)} in code: they belong in the YAML"


def test_batching_is_not_sized_in_code() -> None:
    import ast

    for path in sorted((REPO / "deployments").glob("*.py")) + [REPO / "serve_app.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr == "batch" and (node.args or node.keywords):
                    pytest.fail(f"{path.name}:{node.lineno} sizes @serve.batch in code")
                if node.func.attr == "options":
                    pytest.fail(f"{path.name}:{node.lineno} sets deployment options in code")
            if isinstance(node, ast.FunctionDef) and node.name == "reconfigure":
                # config.get("max_batch_size", 4) would be a second default beside the YAML's.
                gets = [c for c in ast.walk(node) if isinstance(c, ast.Call)
                        and isinstance(c.func, ast.Attribute) and c.func.attr == "get"]
                assert not gets, f"{path.name}:{node.lineno} reconfigure has fallback values"


@pytest.mark.parametrize("config_file", ["serve_config.yaml", "serve_config.gpu.yaml"])
def test_each_yaml_sets_every_deployment_option_the_code_left_out(config_file: str) -> None:
    (app,) = yaml.safe_load((REPO / config_file).read_text())["applications"]
    entries = {d["name"]: d for d in app["deployments"]}
    assert set(entries) == set(deployment_classes())
    for name, entry in entries.items():
        for key in ("autoscaling_config", "ray_actor_options", "max_ongoing_requests",
                    "max_queued_requests"):
            assert key in entry, (config_file, name, key)
    for name in EMBEDDERS:
        assert set(entries[name]["user_config"]) == {"max_batch_size", "batch_wait_timeout_s"}
    # And the resolved app carries them (no code value competes, none is lost).
    infos = resolve(config_file)
    for name, entry in entries.items():
        config = infos[name].deployment_config
        assert config.max_ongoing_requests == entry["max_ongoing_requests"]
        assert config.autoscaling_config.max_replicas == entry["autoscaling_config"]["max_replicas"]
        options = dict(infos[name].replica_config.ray_actor_options)
        options.pop("runtime_env", None)  # the application's, which Serve copies in
        assert options == entry["ray_actor_options"]
        assert config.user_config == entry.get("user_config")


def test_the_tests_and_benches_start_the_app_from_the_yaml_with_their_settings() -> None:
    from lookalike.launch.serving import load_config

    config = load_config(REPO / "serve_config.yaml", Settings(port=8123, front_proxy=False),
                         app_args={"settings": {"collection": "e2e"}, "image_threads": 2})
    (app,) = config.applications
    assert config.http_options.port == 8123
    # Behind the front proxy, which takes the settings' port, Serve's proxy is on loopback.
    behind = load_config(REPO / "serve_config.yaml", Settings(host="0.0.0.0", port=8123,
                                                              serve_port=8124))
    assert (behind.http_options.host, behind.http_options.port) == ("127.0.0.1", 8124)
    picked = load_config(REPO / "serve_config.yaml", Settings(port=8123)).http_options.port
    assert picked not in (0, 8123)
    assert app.args == {"image_threads": 2, "text_threads": 1, "settings": {"collection": "e2e"}}
    gpu = load_config(REPO / "serve_config.gpu.yaml", Settings(),
                      app_args={"settings": {"collection": "e2e"}})
    # Merged key by key: the overlay's own settings stay.
    assert gpu.applications[0].args["settings"] == {"device": "cuda", "collection": "e2e"}
    assert not ray.is_initialized()
