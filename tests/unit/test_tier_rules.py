"""The tiers' rules (tests/tier_rules.py) on the audit events they judge, and the hook in
tests/tiers.py refusing the real thing in a unit test."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.tier_rules import starts, violation
from tests.tiers import forbids, refused, weight_roots

ROOTS = (("/hub/",), ("/models/text/",))  # (every file a model's, packaged model folders)


@pytest.mark.parametrize(("event", "args", "kind"), [
    ("open", ("/models/text/model.safetensors", "rb", 0), "weights"),
    ("open", ("/models/text/modules.json", "r", 0), "weights"),  # sentence-transformers' load
    ("open", ("/hub/models--x/snapshots/1/config.json", "r", 0), "weights"),
    ("socket.connect", (None, ("93.184.216.34", 443)), "network"),
    ("socket.connect", (None, ("2606:2800:220:1::", 443, 0, 0)), "network"),
    ("socket.sendto", (None, ("8.8.8.8", 53)), "network"),
    ("socket.getaddrinfo", ("huggingface.co", 443, 0, 0, 0), "network"),
    ("socket.gethostbyname", ("example.com",), "network"),
    ("subprocess.Popen", ("ray", ["ray", "start", "--head"], None, None), "ray"),
    ("subprocess.Popen", ("/venv/bin/python", ["/venv/bin/python", "-m", "lookalike.cli", "serve"],
                          None, None), "ray"),
    ("subprocess.Popen", ("/venv/lib/ray/core/src/ray/gcs/gcs_server",
                          ["/venv/lib/ray/core/src/ray/gcs/gcs_server", "--port=0"], None, None),
     "ray"),
    ("subprocess.Popen", ("/bin/sh", "python ingest_job.py --manifest m.jsonl", None, None), "ray"),
    ("subprocess.Popen", ("/venv/bin/python",
                          ["/venv/bin/python", "-m", "lookalike.store.lite_server", "--port"], None,
                          None), "milvus"),
])
def test_what_the_rules_catch(event: str, args: tuple, kind: str) -> None:
    found = violation(event, args, ROOTS)
    assert found is not None and found[0] == kind, found


@pytest.mark.parametrize(("event", "args"), [
    ("open", ("/models/textual.safetensors", "rb", 0)),  # a sibling of a root is not under it
    ("open", ("/models/text/tokenizer.json", "r", 0)),  # a tokenizer is not the model
    ("open", (3, "rb", 0)),
    ("socket.connect", (None, ("127.0.0.1", 8000))),
    ("socket.connect", (None, ("::1", 8000, 0, 0))),
    ("socket.connect", (None, "/tmp/some.sock")),
    ("socket.getaddrinfo", ("localhost", 8000, 0, 0, 0)),
    ("socket.getaddrinfo", ("10.1.2.3", 80, 0, 0, 0)),  # a literal resolves without the network
    ("subprocess.Popen", ("git", ["git", "ls-files"], None, None)),
    ("subprocess.Popen", ("lookalike", ["lookalike", "stop"], None, None)),
    ("import", ("ray", None, None, None, None)),  # building a Serve app needs no running Ray
])
def test_what_the_rules_allow(event: str, args: tuple) -> None:
    assert violation(event, args, ROOTS) is None


def test_the_cli_starts_something_only_for_commands_that_do() -> None:
    assert starts(["lookalike", "demo"]) == "ray"
    assert starts(["lookalike", "--help"]) is None
    assert starts(["python", "ingest_job.py", "--help"]) is None  # the packaging test's check
    assert starts(["python", "ingest_job.py", "manifest.csv"]) == "ray"


@pytest.mark.parametrize(("tier", "kind", "marks", "refused_"), [
    ("unit", "weights", {"weights"}, True),  # no marker makes weights a unit test's business
    ("unit", "network", set(), True),
    ("integration", "weights", set(), True),  # unmarked: the marker must say so
    ("integration", "weights", {"weights"}, False),
    ("integration", "milvus", set(), False),
    ("integration", "ray", {"ray"}, True),  # Ray is never integration: the test moves to e2e
    ("e2e", "ray", set(), False),
])
def test_what_each_tier_forbids(tier: str, kind: str, marks: set[str], refused_: bool) -> None:
    assert forbids(tier, kind, frozenset(marks)) is refused_


def test_the_hook_refuses_opening_the_real_weights() -> None:
    whole, packaged = weight_roots()
    assert whole and packaged  # the packaged models are installed with the project
    with refused("model weights"):
        open(packaged[0] + "model.safetensors", "rb")  # noqa: SIM115 - refused before it opens


def test_the_hook_refuses_the_network_and_a_ray_process() -> None:
    with socket.socket() as s, refused("connecting"):
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed, even if the hook were off
    with refused("has no ray"):
        subprocess.run([sys.executable, "-m", "lookalike.cli", "serve"], check=False)
