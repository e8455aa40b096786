"""Issue 29's latency benches, their pure parts: CPU per request by role, the one-client
targets, the original design's upload parsing and the comparison's verdict."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from bench.one_client import (
    CPU_ABOVE_FLOOR_MS,
    cpu_ms_per_request,
    distinct_queries,
    latency_limit_ms,
    path_cpu_ms,
    role_of,
    tree_cpu_by_role,
    verdicts,
)
from bench.original_app import upload
from bench.original_compare import judge
from bench.report import headline


def test_cpu_per_request_is_the_delta_over_the_requests() -> None:
    before = {"router (ingress) replicas": 1.0, "milvus-lite server": 2.0}
    after = {"router (ingress) replicas": 1.5, "milvus-lite server": 2.1, "other": 0.2}
    by_role = cpu_ms_per_request(before, after, 100)
    # A process that started in between counts from zero.
    assert by_role == {"milvus-lite server": 1.0, "other": 2.0, "router (ingress) replicas": 5.0}


def test_a_process_that_exited_never_makes_cpu_negative() -> None:
    assert cpu_ms_per_request({"Serve proxy": 3.0}, {"Serve proxy": 1.0}, 10) == {"Serve proxy": 0.0}
    with pytest.raises(ValueError):
        cpu_ms_per_request({}, {}, 0)


def test_the_request_path_leaves_out_ray_clockwork_and_strangers() -> None:
    by_role = {"router (ingress) replicas": 2.0, "image embedder replicas": 20.0,
               "milvus-lite server": 3.0, "Serve controller": 7.0, "Ray raylet/GCS": 5.0,
               "other": 11.0}
    assert path_cpu_ms(by_role) == 25.0


@pytest.mark.parametrize(("cmdline", "role"), [
    ("ray::ServeReplica:lookalike:SearchRouter", "router (ingress) replicas"),
    ("ray::ServeReplica:lookalike:ImageEmbedderDeployment", "image embedder replicas"),
    ("python -m lookalike.store.lite_launcher --port 1", "milvus-lite server"),
    ("haproxy -f /tmp/x/front-proxy.cfg", "front proxy (HAProxy)"),
    ("vim notes.txt", "other"),
])
def test_roles_by_command_line(cmdline: str, role: str) -> None:
    assert role_of(cmdline) == role


def test_tree_cpu_counts_this_process_children_only() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        by_role = tree_cpu_by_role([os.getpid()])
        assert "other" in by_role and by_role["other"] >= 0.0
        assert tree_cpu_by_role([child.pid]) == {}  # the root itself is not counted
    finally:
        child.communicate(b"")


def test_the_series_texts_are_distinct() -> None:
    queries = distinct_queries()
    assert len(queries) == 200 and len(set(queries)) == 200


def test_the_limit_is_the_ratio_unless_the_floor_is_higher() -> None:
    assert latency_limit_ms(parts_ms=20.0, factor=1.5, floor_ms=None) == 30.0
    assert latency_limit_ms(parts_ms=20.0, factor=1.5, floor_ms=25.0) == 30.0
    assert latency_limit_ms(parts_ms=20.0, factor=1.5, floor_ms=35.0) == 37.0


def test_verdicts_add_the_model_part_to_the_floor() -> None:
    v = verdicts(text_p50=40.0, photo_p50=40.0, encode=6.0, forward=20.0, text_search=4.0,
                 photo_search=4.0, floor_text=30.0, floor_photo=8.0, cpu_above_floor=6.5)
    # text: 1.5 x 10 = 15 ms, but the floor with the encode is 36 ms: 38 ms allowed.
    assert v["text"] == {"p50_ms": 40.0, "limit_ms": 38.0, "met": False, "over_parts": 4.0}
    # photo: 1.3 x 24 = 31.2 ms against 8 + 20 + 2 = 30 ms.
    assert v["photo"]["limit_ms"] == 31.2 and v["photo"]["met"] is False
    assert v["photo_cpu_above_floor"] == {"ms": 6.5, "limit_ms": CPU_ABOVE_FLOOR_MS,
                                          "met": False}
    without = verdicts(text_p50=14.0, photo_p50=30.0, encode=6.0, forward=20.0, text_search=4.0,
                       photo_search=4.0, floor_text=None, floor_photo=None, cpu_above_floor=None)
    assert without["text"]["met"] and without["photo"]["met"]
    assert "photo_cpu_above_floor" not in without


def multipart(parts: dict[str, tuple[str, bytes]]) -> tuple[str, bytes]:
    boundary = "bench-boundary"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{fn}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        for name, (fn, data) in parts.items()) + f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def test_the_original_design_reads_the_image_part() -> None:
    ctype, body = multipart({"other": ("a.txt", b"no"), "image": ("q.jpg", b"\xff\xd8jpeg")})
    environ = {"CONTENT_TYPE": ctype, "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body)}
    assert upload(environ) == b"\xff\xd8jpeg"
    ctype, body = multipart({"other": ("a.txt", b"no")})
    with pytest.raises(ValueError, match="no image"):
        upload({"CONTENT_TYPE": ctype, "CONTENT_LENGTH": str(len(body)),
                "wsgi.input": io.BytesIO(body)})


def run(qps: float, p99: float, errors: int = 0) -> dict[str, float]:
    return {"qps": qps, "p99_ms": p99, "errors": errors}


def test_the_comparison_needs_twice_the_qps_and_no_worse_p99() -> None:
    assert judge(run(40.0, 900.0), run(20.0, 1000.0))["met"]
    assert not judge(run(39.0, 900.0), run(20.0, 1000.0))["met"]
    assert not judge(run(40.0, 1001.0), run(20.0, 1000.0))["met"]
    assert not judge(run(40.0, 900.0, errors=3), run(20.0, 1000.0))["met"]
    assert judge(run(40.0, 900.0), run(0.0, 1000.0))["qps_ratio"] is None


def test_the_report_headlines_say_each_verdict() -> None:
    latency = {"targets": verdicts(text_p50=14.0, photo_p50=40.0, encode=6.0, forward=20.0,
                                   text_search=4.0, photo_search=4.0, floor_text=None,
                                   floor_photo=None, cpu_above_floor=None)}
    lines = headline("latency", latency)
    assert lines[0].startswith("text p50 14.0 ms = 1.4 x") and lines[0].endswith(": met")
    assert lines[1].endswith("not met") and "no floor measured" in lines[2]
    original = {"lookalike": run(40.0, 900.0), "original": run(20.0, 1000.0),
                **judge(run(40.0, 900.0), run(20.0, 1000.0))}
    assert headline("original", original)[1].endswith(": met")
    floor = {"text": {"p50_ms": 9.0, "p99_ms": 12.0, "request_path_cpu_ms": 4.0},
             "photo": {"p50_ms": 15.0, "p99_ms": 20.0, "request_path_cpu_ms": 10.0}}
    assert "photo: p50 15.0 ms" in headline("p9_one", floor)[1]
