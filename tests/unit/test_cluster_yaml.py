"""cluster.yaml, rendered as its header says (envsubst of three documented variables), passes
Ray's own launcher validation (defaults filled in, then ray-schema.json and Ray's checks), and
holds what a launchable lookalike cluster needs."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster.yaml"
DOCUMENTED = {"LOOKALIKE_IMAGE": "registry.example.com/lookalike:0.1.0",
              "LOOKALIKE_MILVUS_URI": "http://milvus.internal:19530",
              "LOOKALIKE_CLUSTER_ENV": "~/.lookalike/cluster.env"}
# Expanded by Ray on the node, not by envsubst.
RAY_OWN = {"RAY_HEAD_IP"}


def render(text: str, values: dict[str, str]) -> str:
    """envsubst with a SHELL-FORMAT list: only the named variables are replaced."""
    return re.sub(r"\$\{?([A-Z_][A-Z0-9_]*)\}?",
                  lambda m: values.get(m[1], m[0]) if m[1] in DOCUMENTED else m[0], text)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load(render(CLUSTER.read_text(), DOCUMENTED))


def test_only_documented_variables_are_left_to_fill_in() -> None:
    text = CLUSTER.read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", body))
    assert used == set(DOCUMENTED) | RAY_OWN
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for name in DOCUMENTED:
        assert name in header, f"{name} is not documented in the header"
    assert "lookalike:latest" not in text and "MILVUS_PROXY_HOST" not in text


def test_valid_by_rays_own_config_validation(config: dict[str, Any]) -> None:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["docker"]["image"] == DOCUMENTED["LOOKALIKE_IMAGE"]


def test_rays_validation_can_fail(config: dict[str, Any]) -> None:
    broken = copy.deepcopy(config)
    broken["available_node_types"]["head"]["resurces"] = {}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))
    wrong_head = copy.deepcopy(config)
    wrong_head["head_node_type"] = "nowhere"
    with pytest.raises(ValueError):
        validate_config(prepare_config(wrong_head))


def test_the_head_schedules_nothing_and_workers_come_in_cpu_and_gpu(
        config: dict[str, Any]) -> None:
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    start = " ".join(config["head_start_ray_commands"])
    assert "--num-cpus=0" in start
    workers = {n: t for n, t in types.items() if n != config["head_node_type"]}
    assert {"cpu_worker", "gpu_worker"} <= set(workers)
    assert workers["cpu_worker"]["min_workers"] >= 2  # replicas on more than one node
    assert "--gpus all" in workers["gpu_worker"]["docker"]["worker_run_options"]
    assert workers["gpu_worker"]["node_config"]["InstanceType"].startswith(("g", "p"))


def test_token_auth_on_every_node(config: dict[str, Any]) -> None:
    assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), key


def test_milvus_address_and_settings_reach_every_node(config: dict[str, Any]) -> None:
    assert (f"--env LOOKALIKE_MILVUS_URI={DOCUMENTED['LOOKALIKE_MILVUS_URI']}"
            in config["docker"]["run_options"])
    assert config["file_mounts"]["~/lookalike.env"] == DOCUMENTED["LOOKALIKE_CLUSTER_ENV"]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in config[key] if "ray start" in c)
        assert ". ~/lookalike.env" in start, key  # sourced before Ray: replicas inherit it
    assert "export LOOKALIKE" not in CLUSTER.read_text()  # nothing written into .bashrc


def test_the_head_deploys_the_app_and_the_ingest_is_a_job(config: dict[str, Any]) -> None:
    deploy = [c for c in config["head_start_ray_commands"] if "serve deploy" in c]
    assert deploy and "serve_config.yaml" in deploy[0] and "0.0.0.0" in deploy[0]
    assert (ROOT / "serve_config.yaml").is_file()
    header = CLUSTER.read_text().split("cluster_name:")[0]
    assert "ray job submit" in header and "ingest_job.py" in header
