"""`lookalike status`: the state of the system at a glance.

The store part is read from the store directly, so it answers whether or not the app runs; the
app part comes from the running app (its record in the data dir, GET /readyz and /v1/info) and
the Serve part from the Ray dashboard's REST API, signed in with the Ray token.
"""

from __future__ import annotations

from typing import Any

import httpx

from lookalike import runfile
from lookalike.banner import _row, warning_lines, watch_lines
from lookalike.config import Settings
from lookalike.dashboard import serve_deployments
from lookalike.info import store_warnings
from lookalike.ingest.record import load_last_ingest
from lookalike.store.base import StoreError
from lookalike.store.lite_server import LiteServer


def _store_lines(settings: Settings) -> tuple[list[str], dict[str, Any] | None]:
    from lookalike.store.milvus import MilvusStore

    uri = settings.resolved_milvus_uri
    kind = "milvus-lite, embedded" if settings.embedded else "Milvus"
    if settings.embedded and not LiteServer.from_settings(settings).is_serving():
        return [_row("store:", f"{uri} ({kind}) not running")], None
    try:
        # Dimensions only matter for writes and for creating the collection.
        store = MilvusStore.from_settings(settings, image_dim=0, text_dim=0)
    except StoreError as exc:
        return [_row("store:", f"{uri} ({kind}) unreachable: {exc}")], None
    try:
        lines = [_row("store:", f"{uri} ({kind}) reachable")]
        if not store.client.has_collection(settings.collection):
            return lines + [_row("collection:", f"{settings.collection}: not created yet "
                                 "(nothing ingested)")], None
        lines.append(_row("collection:", f"{settings.collection}: {store.count()} products"))
        return lines, load_last_ingest(store)
    except StoreError as exc:
        return [_row("store:", f"{uri} ({kind}) failing: {exc}")], None
    finally:
        store.close()


def _ingest_line(record: dict[str, Any] | None) -> str:
    if not record:
        return _row("last ingest:", "none recorded")
    return _row("last ingest:", (
        f"{record.get('finished_at')} {record.get('manifest', '?')} ({record.get('source', '?')}): "
        f"read {record.get('read')}, written {record.get('written')}, skipped "
        f"{record.get('skipped_unchanged')}, failed {record.get('failed')}, deleted "
        f"{record.get('deleted')}, {record.get('seconds')} s"))


def _serve_lines(dashboard_url: str) -> list[str]:
    try:
        apps = serve_deployments(dashboard_url)
    except httpx.HTTPError as exc:
        return [_row("Serve:", f"cannot read it from the dashboard: {exc}")]
    if not apps:
        return [_row("Serve:", "no application deployed")]
    lines = []
    for name, app in apps.items():
        lines.append(_row(f"Serve app {name!r}:", str(app["status"])))
        for dname, dep in app["deployments"].items():
            replicas = ", ".join(f"{n} {state}" for state, n in sorted(dep["replicas"].items()))
            lines.append(f"    {dname:<30}{dep['status']:<12}replicas: {replicas or 'none'}")
    return lines


def report(settings: Settings) -> tuple[str, int]:
    """(the text, exit code: 0 when the app answers ready, 1 otherwise)."""
    lines = [f"lookalike status (data dir {settings.data_dir.resolve()})",
             *warning_lines(store_warnings(settings))]
    run = runfile.read(settings.data_dir)
    ready = False
    info: dict[str, Any] | None = None
    if run is None:
        lines.append(_row("app:", "not running (start it with `lookalike demo` or "
                          "`lookalike serve`)"))
    else:
        try:
            readyz = httpx.get(run.app_url + "/readyz", timeout=5)
            ready = readyz.status_code == 200
            state = "ready" if ready else f"not ready: {readyz.text[:200]}"
            if ready:
                info = httpx.get(run.app_url + "/v1/info", timeout=10).json()
        except httpx.HTTPError as exc:
            state = f"not answering: {exc}"
        lines.append(_row("app:", f"{run.app_url} {state} (`lookalike {run.command}`, pid "
                          f"{run.pid}, since {run.started_at})"))
    store_lines, record = _store_lines(settings)
    lines += store_lines
    if info is not None:
        lines.append(_row("products searchable:", str(info["products"])))
        lines.append(_row("model version:", info["model"]["version"]))
        record = info.get("last_ingest") or record
    elif record and record.get("model_version"):
        lines.append(_row("model version:", f"{record['model_version']} (of the last ingest)"))
    lines.append(_ingest_line(record))
    if run is not None:
        lines += _serve_lines(run.dashboard_url)
        lines += watch_lines(run)
    return "\n".join(lines), 0 if ready else 1
