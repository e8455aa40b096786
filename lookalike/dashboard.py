"""Signing in to the Ray dashboard, and reading Serve's state through its REST API.

Ray 2.60 turns token authentication on for a local cluster (unless RAY_AUTH_MODE=disabled).
It offers no one-time login URL: the dashboard opens an "Authentication Token Required" box,
and a valid token there sets a 30-day cookie. Ray finds the token, in this order, in the
RAY_AUTH_TOKEN variable, the file RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token (created by
the first local ray.init; `ray get-auth-token` prints it). The same token, as
`Authorization: Bearer <token>`, opens the REST API (jobs, Serve).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

DEFAULT_TOKEN_FILE = Path.home() / ".ray" / "auth_token"


def auth_disabled() -> bool:
    return os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled"


def token_source() -> str:
    """Where Ray takes the token from, in words a person can act on."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "the RAY_AUTH_TOKEN environment variable"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return os.environ["RAY_AUTH_TOKEN_PATH"]
    return str(DEFAULT_TOKEN_FILE)


def read_token() -> str | None:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or DEFAULT_TOKEN_FILE)
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def signin_lines() -> list[str]:
    if auth_disabled():
        return ["no sign-in: token authentication is off (RAY_AUTH_MODE=disabled)"]
    return [f"paste the token from {token_source()} into its \"Authentication Token\" box",
            "(`ray get-auth-token` prints it; the dashboard then keeps a 30-day cookie)"]


def auth_headers() -> dict[str, str]:
    token = None if auth_disabled() else read_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def serve_deployments(dashboard_url: str, timeout_s: float = 5.0) -> dict[str, dict[str, Any]]:
    """{app: {"status", "deployments": {name: {"status", "replicas": {state: n}}}}} from
    GET /api/serve/applications/ (what `serve status` reads)."""
    resp = httpx.get(f"{dashboard_url}/api/serve/applications/", headers=auth_headers(),
                     timeout=timeout_s)
    resp.raise_for_status()
    apps: dict[str, dict[str, Any]] = {}
    for name, app in (resp.json().get("applications") or {}).items():
        deployments = {}
        for dname, dep in (app.get("deployments") or {}).items():
            states: dict[str, int] = {}
            for replica in dep.get("replicas") or []:
                states[replica.get("state", "?")] = states.get(replica.get("state", "?"), 0) + 1
            deployments[dname] = {"status": dep.get("status"), "replicas": states}
        apps[name] = {"status": app.get("status"), "deployments": deployments}
    return apps
