"""The embedded server as lookalike launches it, seen by a plain pymilvus client.

The client runs in a subprocess so that its grpc core's own log (stderr) can be read: that is
where a GOAWAY from the server shows, even when grpc reconnects and the next call succeeds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from lookalike.store.lite_server import LiteServer

# pymilvus pings every 10 s, idle or not. grpc's client stops after two pings without data
# unless told otherwise, which made the fault intermittent (a CI run met it, reruns did not);
# the client here keeps pinging, so the default server policy GOAWAYs it by the third ping.
IDLE_S = 45

CLIENT = textwrap.dedent("""
    import sys, time
    from pymilvus import MilvusClient
    client = MilvusClient(uri=sys.argv[1],
                          grpc_options={"grpc.http2.max_pings_without_data": 0})
    client.list_collections()
    time.sleep(float(sys.argv[2]))
    print("after idle:", client.list_collections())
""")


def test_an_idle_client_keeps_its_connection(lite_server: LiteServer) -> None:
    """A router replica idle overnight must find its store connection alive: the server accepts
    the keepalive pings pymilvus sends (a CI run lost a cached connection to "Too many pings")."""
    env = {**os.environ, "GRPC_VERBOSITY": "INFO"}
    done = subprocess.run([sys.executable, "-c", CLIENT, lite_server.uri, str(IDLE_S)],
                          capture_output=True, text=True, timeout=IDLE_S + 60, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "after idle:" in done.stdout
    assert "too_many_pings" not in done.stderr and "GOAWAY" not in done.stderr, done.stderr[-2000:]
