"""The `lookalike` command (pyproject [project.scripts]; also `python -m lookalike.cli`).

    lookalike demo                 milvus-lite, the app, the demo catalogue; Ctrl-C stops it all
    lookalike serve [--config F]   the Serve app from serve_config.yaml, in the foreground
    lookalike ingest MANIFEST ...  the Ray Data ingest job (on the running app's Ray, else its own)
    lookalike status               store, products, model, Serve replicas, last ingest, dashboards
    lookalike stop                 stops what `serve` / `demo` started for this data dir
    lookalike upgrade --clip-model M   re-embed the catalogue with another model, evaluate both,
                                   switch the served alias if the new one is not worse

Settings come from LOOKALIKE_* variables (lookalike/config.py), as for every other entry point.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from lookalike import runfile
from lookalike.config import Settings, private_dir

STOP_WAIT_S = 60.0  # how long `lookalike stop` waits for the app to exit


def serve_config_path(name: str = "serve_config.yaml") -> Path:
    """A Serve config beside the entry modules (lookalike.app): a checkout's top level, or the
    wheel's lookalike/app/ (package data)."""
    spec = importlib.util.find_spec("lookalike.app")
    assert spec is not None and spec.submodule_search_locations is not None
    return Path(next(iter(spec.submodule_search_locations))) / name


def _say(msg: str) -> None:
    print(msg, flush=True)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def _stop_on_signals() -> None:
    # SIGINT explicitly: a process started in the background of a script begins with SIGINT
    # ignored, and Python then installs no KeyboardInterrupt for it.
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)


# -- demo / serve: the app in the foreground ---------------------------------------------------


def _prepare_demo(settings: Settings, products: int, source: str | None) -> Path:
    from lookalike.catalog import demo

    out = settings.data_dir / "demo"
    manifest = out / "manifest.jsonl"
    if not manifest.is_file() or len(manifest.read_text().splitlines()) != products:
        _say(f"building the demo catalogue: {products} products in {out}")
        demo.build(out, products, source=source, variant_share=demo.DEMO_VARIANT_SHARE)
    return manifest


def _ingest_on(cluster, manifest: Path) -> None:
    from lookalike.launch import jobs

    job = jobs.submit_ingest(cluster.dashboard_url, manifest, [], gcs_address=cluster.gcs_address)
    _say(f"ingest job {job} submitted (dashboard: {cluster.dashboard_url}/#/jobs/{job})")
    status = jobs.follow(cluster.dashboard_url, job)
    if status != "SUCCEEDED":
        raise RuntimeError(f"the ingest job {job} ended {status}; its log is above")


def _stop_all(cluster, front, lite, owned_lite: bool, reason: str) -> None:
    from lookalike.store.lite_server import HOST

    started = time.monotonic()
    replicas = cluster.serve_replicas() if cluster.gcs_address else 0
    _say(f"\nstopping lookalike ({reason}):")
    if front is not None:  # first: its supervisor would restart it once Ray ends it
        _say(f"  - the front proxy on {front.url}")
        front.stop()
    if cluster.gcs_address:
        _say(f"  - the Serve app ({replicas} replica processes) and the local Ray (session "
             f"{Path(cluster.session_dir).name}, dashboard {cluster.dashboard_url})")
    stopped, killed = cluster.stop()
    if killed:
        _say(f"    killed {len(killed)} processes that outlived Ray's shutdown")
    if lite is not None and owned_lite:
        _say(f"  - milvus-lite on {HOST}:{lite.port} (data {lite.db_dir})")
        lite.stop()
    elif lite is not None:
        _say(f"  - leaving milvus-lite on {HOST}:{lite.port} running: it was running before")
    _say(f"stopped in {time.monotonic() - started:.1f} s ({stopped} Ray processes)")


def check_secrets(settings: Settings) -> list[str]:
    """Before anything starts: the data directory (made 0700), the admin key and the embedded
    store's token (made once, 0600). Raises ValueError for a key or token file other users may
    read (it says `chmod 600 <file>`); returns warnings (a data directory open to others)."""
    warning = private_dir(settings.data_dir)
    settings.resolved_admin_key()
    if settings.embedded:
        settings.resolved_milvus_token()
    return [warning] if warning else []


def admin_key_source(settings: Settings) -> str:
    """Where the admin key is, for the banner: never the key itself."""
    if settings.admin_key.get_secret_value():
        return "the LOOKALIKE_ADMIN_KEY setting"
    return str((settings.data_dir / "admin.key").resolve())


def run_foreground(settings: Settings, *, command: str, config: Path,
                   demo_products: int | None = None, demo_source: str | None = None) -> int:
    try:
        dir_warnings = check_secrets(settings)
    except ValueError as exc:
        _say(f"lookalike {command} refused to start: {exc}")
        return 1
    for warning in dir_warnings:
        _say(f"WARNING: {warning}")
    from lookalike.launch.local_ray import prepare_environment

    prepare_environment()  # first: the imports below import ray
    from lookalike.banner import ready_banner
    from lookalike.info import store_warnings
    from lookalike.launch.local_ray import LocalRay, check_port_free
    from lookalike.store.lite_server import LiteServer

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _stop_on_signals()
    from lookalike.launch.serving import deploy, load_config, reserved_cpus, wait_ready

    serve_config = load_config(config, settings)
    lite = LiteServer.from_settings(settings) if settings.embedded else None
    # Ray's CPUs are scheduling slots: the machine's cores for jobs (the ingest) plus what the
    # app's replicas may hold at most. The replicas sit idle between searches, and without the
    # extra slots an ingest next to the app finds no CPU free on a small machine.
    cluster = LocalRay(dashboard_port=settings.dashboard_port, metrics_port=settings.metrics_port,
                       host=settings.host,
                       num_cpus=(os.cpu_count() or 1) + math.ceil(reserved_cpus(serve_config)))
    owned_lite, code, reason, front = False, 0, "Ctrl-C", None
    app_url = f"http://{settings.host}:{settings.port}"
    try:
        check_port_free(settings.port, "LOOKALIKE_PORT", settings.host)
        if lite is not None:
            owned_lite = lite.ensure_running()
            _say(f"milvus-lite serving at {lite.uri} (data {lite.db_dir})")
            if lite.supervisor_pid():
                from lookalike.procs import descendants

                cluster.spare([lite.supervisor_pid(), *descendants(lite.supervisor_pid())])
        _say("starting a local Ray (dashboard on "
             f"http://{settings.host}:{settings.dashboard_port})")
        cluster.start()
        # Ray installs its own SIGTERM handler in the head's driver (drain, then exit 1);
        # ours stops the same way Ctrl-C does.
        _stop_on_signals()
        run = runfile.RunRecord(
            pid=os.getpid(), command=command, app_url=app_url,
            dashboard_url=cluster.dashboard_url, metrics_url=cluster.metrics_url,
            gcs_address=cluster.gcs_address, collection=settings.collection,
            started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        runfile.write(settings.data_dir, run)
        front = deploy(serve_config, settings)
        ready = wait_ready(app_url)
        if demo_products is not None:
            # Once the replicas hold their CPUs: the job is sized on what they leave free.
            _ingest_on(cluster, _prepare_demo(settings, demo_products, demo_source))
            ready = wait_ready(app_url)
            _tell_routers(settings, app_url)  # a page opened during the ingest: its facets
        _say(ready_banner(run, products=ready.get("products"),
                          admin_key_at=admin_key_source(settings),
                          warnings=[*dir_warnings, *store_warnings(settings)]))
        while True:
            time.sleep(3600)
    except Interrupted as exc:
        reason = "Ctrl-C" if exc.signum == signal.SIGINT else f"{exc} (`lookalike stop`?)"
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - any failure: say it, then stop what we started
        _say(f"\nlookalike {command} failed: {exc}")
        code, reason = 1, "after the failure"
    finally:
        # A second Ctrl-C must not cut the stop short and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop_all(cluster, front, lite, owned_lite, reason)
        runfile.remove(settings.data_dir, os.getpid())
    return code


# -- ingest / status / stop ----------------------------------------------------------------------


def cmd_ingest(settings: Settings, manifest: Path, extra: list[str]) -> int:
    run = runfile.read(settings.data_dir)
    if run is None:
        # No app running: the job on a private local Ray, exactly `python ingest_job.py`.
        from lookalike.app import ingest_job

        return ingest_job.main(["--manifest", str(manifest), *extra])
    from lookalike.launch import jobs

    if not manifest.is_file():
        _say(f"manifest not found: {manifest}")
        return 2
    job = jobs.submit_ingest(run.dashboard_url, manifest, extra, gcs_address=run.gcs_address)
    _say(f"ingest job {job} submitted to the running app's Ray "
         f"({run.dashboard_url}/#/jobs/{job})")
    try:
        status = jobs.follow(run.dashboard_url, job)
    except KeyboardInterrupt:
        return 130
    _say(f"ingest job {job}: {status}")
    if status != "SUCCEEDED":
        return 1
    _tell_routers(settings, run.app_url)  # the new catalogue's facets at once
    return 0


def cmd_status(settings: Settings) -> int:
    from lookalike.status import report

    text, code = report(settings)
    _say(text)
    return code


def cmd_stop(settings: Settings) -> int:
    from lookalike.procs import alive
    from lookalike.store.lite_server import LiteServer

    run = runfile.read(settings.data_dir)
    if run is None:
        _say(f"no `lookalike serve` or `demo` running for data dir {settings.data_dir}")
    else:
        _say(f"stopping `lookalike {run.command}` (pid {run.pid}, {run.app_url})")
        started = time.monotonic()
        os.kill(run.pid, signal.SIGTERM)  # it stops as on Ctrl-C, and says so in its terminal
        while alive(run.pid) and time.monotonic() - started < STOP_WAIT_S:
            time.sleep(0.1)
        if alive(run.pid):
            _say(f"pid {run.pid} still runs after {STOP_WAIT_S:.0f} s")
            return 1
        _say(f"stopped in {time.monotonic() - started:.1f} s")
    if settings.embedded:
        lite = LiteServer.from_settings(settings)
        if lite.is_serving() or lite.supervisor_pid():
            lite.stop()
            _say(f"milvus-lite on {lite.uri} stopped")
    return 0


def cmd_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from lookalike.store.lite_server import LiteServer
    from lookalike.upgrade import Upgrade, UpgradeOptions

    spec = {k: v for k in ("image_model", "image_weights", "text_model", "clip_model")
            if (v := getattr(args, k)) is not None}
    if not spec and not args.drop_old:
        _say("name the new model: --image-model/--image-weights, --text-model or --clip-model "
             "(or --drop-old alone: drop the collections earlier upgrades left)")
        return 2
    if settings.embedded:
        LiteServer.from_settings(settings).ensure_running()  # the running app's, or its own
    if not spec:
        return _drop_retired(settings)
    result = Upgrade(settings, UpgradeOptions(
        spec=spec, force=args.force, drop_old=args.drop_old, tolerance=args.tolerance,
        eval_products=args.eval_products, eval_image_queries=args.eval_image_queries),
        say=_say, notify=lambda: _tell_routers(settings)).run()
    _say(json.dumps(result, indent=2))
    if result["switched"]:
        _say("now set the new model's LOOKALIKE_* settings for the app and the ingest job "
             "(until then the app embeds for it in-process)")
    return 0 if result["switched"] else 1


def _tell_routers(settings: Settings, url: str | None = None) -> None:
    """The running app's routers resolve the alias and rescan the facets now, not at their
    next background check (lookalike/notify.py)."""
    from lookalike.notify import tell_routers

    if url is None:
        run = runfile.read(settings.data_dir)
        url = run.app_url if run else f"http://{settings.host}:{settings.port}"
    told = tell_routers(url, settings.resolved_admin_key().get_secret_value())
    for replica, collection in told.replicas.items():
        _say(f"router {replica} refreshed: it searches {collection}")
    if told.error or not told.replicas:
        _say(f"could not tell the app at {url} ({told.error}); its routers catch up within "
             f"LOOKALIKE_ALIAS_RECHECK_S ({settings.alias_recheck_s:g} s, the alias) and "
             f"LOOKALIKE_FACETS_TTL_S ({settings.facets_ttl_s:g} s, the facets), or at their "
             "next start")


def _drop_retired(settings: Settings) -> int:
    from pymilvus import MilvusClient

    from lookalike.store import aliases

    client = MilvusClient(uri=settings.resolved_milvus_uri, token=settings.resolved_milvus_token())
    try:
        names = aliases.retired(client, settings.collection)
        for name in names:
            client.drop_collection(name)
            _say(f"dropped {name}")
        if not names:
            _say(f"no retired collections of {settings.collection}")
    finally:
        client.close()
    return 0


# -- the command line --------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lookalike", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the demo: store, demo catalogue, ingest, app")
    demo.add_argument("--products", type=int,
                      default=int(os.environ.get("DEMO_PRODUCTS", "2000")))
    demo.add_argument("--source", choices=["auto", "vendored", "debian"], default=None,
                      help="demo photos (default: $LOOKALIKE_DEMO_SOURCE or auto)")
    demo.add_argument("--config", type=Path, default=serve_config_path())
    serve = sub.add_parser("serve", help="the Serve app in the foreground")
    serve.add_argument("--config", type=Path, default=serve_config_path(),
                       help="Serve config (default serve_config.yaml); host/port from settings")
    ingest = sub.add_parser("ingest", help="ingest a catalogue manifest",
                            description="Any further option goes to ingest_job.py "
                            "(--delete-missing, --source NAME, --errors-out FILE, ...).")
    ingest.add_argument("manifest", type=Path)
    sub.add_parser("status", help="the state of the system at a glance")
    sub.add_parser("stop", help="stop what `serve` / `demo` started")
    up = sub.add_parser("upgrade", help="move the catalogue to another model, behind the "
                        "evaluation harness, without downtime",
                        description="Options not given keep the live collection's model "
                        "settings. Exit 0: switched; 1: refused (the new model is worse).")
    up.add_argument("--image-model", help="timm image model (LOOKALIKE_IMAGE_MODEL)")
    up.add_argument("--image-weights", help="packaged, hub or a checkpoint path")
    up.add_argument("--text-model", help="packaged, an HF id or a model dir")
    up.add_argument("--clip-model", help="a CLIP model (HF id or dir) for both roles; '' for none")
    up.add_argument("--force", action="store_true", help="switch even if the new model is worse")
    up.add_argument("--drop-old", action="store_true",
                    help="drop the old collection after the switch; alone (no model option): "
                    "drop every collection earlier upgrades left, once the app runs the new model")
    up.add_argument("--tolerance", type=float, default=0.0,
                    help="how much a harness figure may drop and still pass (default 0)")
    up.add_argument("--eval-products", type=int, default=500,
                    help="products of the harness's labelled catalogue (default 500)")
    up.add_argument("--eval-image-queries", type=int, default=100)
    return p


def main(argv: list[str] | None = None) -> int:
    args, extra = parser().parse_known_args(argv)
    if extra and args.command != "ingest":
        parser().error(f"unrecognized arguments: {' '.join(extra)}")
    settings = Settings()
    if args.command == "demo":
        return run_foreground(settings, command="demo", config=args.config,
                              demo_products=args.products, demo_source=args.source)
    if args.command == "serve":
        return run_foreground(settings, command="serve", config=args.config)
    if args.command == "ingest":
        return cmd_ingest(settings, args.manifest, extra)
    if args.command == "status":
        return cmd_status(settings)
    if args.command == "upgrade":
        return cmd_upgrade(settings, args)
    return cmd_stop(settings)


if __name__ == "__main__":
    sys.exit(main())
