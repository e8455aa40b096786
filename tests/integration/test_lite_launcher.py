"""The embedded server as lookalike launches it, seen by a plain pymilvus client.

The client runs in a subprocess so that its grpc core's own log (stderr) can be read: that is
where a GOAWAY from the server shows, even when grpc reconnects and the next call succeeds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from lookalike.store.lite_server import LiteServer

# pymilvus pings every 10 s, idle or not. grpc's client stops after two pings without data
# unless told otherwise, which made the fault intermittent (a CI run met it, reruns did not);
# the client here keeps pinging, so the default server policy GOAWAYs it by the third ping.
IDLE_S = 45

CLIENT = textwrap.dedent("""
    import os, sys, time
    from pymilvus import MilvusClient
    client = MilvusClient(uri=sys.argv[1], token=os.environ["LITE_TOKEN"],
                          grpc_options={"grpc.http2.max_pings_without_data": 0})
    client.list_collections()
    time.sleep(float(sys.argv[2]))
    print("after idle:", client.list_collections())
""")


def test_an_idle_client_keeps_its_connection(lite_server: LiteServer) -> None:
    """A router replica idle overnight must find its store connection alive: the server accepts
    the keepalive pings pymilvus sends (a CI run lost a cached connection to "Too many pings")."""
    env = {**os.environ, "GRPC_VERBOSITY": "INFO", "LITE_TOKEN": lite_server.token()}
    done = subprocess.run([sys.executable, "-c", CLIENT, lite_server.uri, str(IDLE_S)],
                          capture_output=True, text=True, timeout=IDLE_S + 60, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "after idle:" in done.stdout
    assert "too_many_pings" not in done.stderr and "GOAWAY" not in done.stderr, done.stderr[-2000:]


def test_only_a_client_with_the_token_reaches_the_store(lite_server: LiteServer) -> None:
    """Loopback is open to every local user; the token file (0600) only to its owner."""
    from pymilvus import MilvusClient, MilvusException

    token = lite_server.token()
    assert lite_server.token_file.stat().st_mode & 0o777 == 0o600 and len(token) >= 24
    client = MilvusClient(uri=lite_server.uri, token=token, timeout=10)
    assert isinstance(client.list_collections(), list)  # the server is up, and lets it in
    client.close()
    for wrong in ("", "not-the-token"):
        # pymilvus's connect check gets UNAUTHENTICATED and says "Fail connecting to server".
        with pytest.raises(MilvusException, match="(?i)fail connecting|unauthenticated"):
            MilvusClient(uri=lite_server.uri, token=wrong, timeout=10).list_collections()
    # The server is told where the token is, never the token: command lines are public.
    out = subprocess.run(["pgrep", "-af", f"lite_launcher --data-dir {lite_server.db_dir} "],
                         capture_output=True, text=True).stdout
    assert "--token-file" in out and token not in out


def test_settings_resolve_the_embedded_servers_token(lite_server: LiteServer) -> None:
    from lookalike.config import Settings
    from lookalike.store import MilvusStore

    settings = Settings(data_dir=lite_server.data_dir, lite_port=lite_server.port,
                        collection="t_lite_token")
    assert settings.resolved_milvus_token() == lite_server.token()
    store = MilvusStore.from_settings(settings, image_dim=8, text_dim=4)
    try:
        assert store.client.has_collection("t_lite_token") is False
    finally:
        store.close()
