"""What `lookalike serve` / `demo` print once the app answers, and what `status` repeats: where
the app, the Ray dashboard (and how to sign in), the metrics and the Grafana dashboard are."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lookalike.dashboard import signin_lines
from lookalike.runfile import RunRecord

GRAFANA_FILE = Path(__file__).resolve().parent / "grafana" / "lookalike-dashboard.json"
LABEL = 26  # column of the values


def grafana_dashboard() -> str:
    return str(GRAFANA_FILE)  # package data: a wheel carries it too


def _row(label: str, value: str) -> str:
    return f"  {label:<{LABEL - 2}}{value}"


def watch_lines(run: RunRecord) -> list[str]:
    """The dashboard, its sign-in, the Prometheus scrape address and the Grafana file."""
    signin = signin_lines()
    return [_row("Ray dashboard:", f"{run.dashboard_url}  (Serve: {run.dashboard_url}/#/serve, "
                 f"Jobs: {run.dashboard_url}/#/jobs)"),
            _row("  sign in:", signin[0]),
            *[" " * LABEL + more for more in signin[1:]],
            _row("Prometheus scrape:", run.metrics_url),
            _row("Grafana dashboard:", f"{grafana_dashboard()} (import; pick the Prometheus "
                 "data source)")]


def warning_lines(warnings: Sequence[str]) -> list[str]:
    return [_row("WARNING:", w) for w in warnings]


def ready_banner(run: RunRecord, *, products: int | None, admin_key_at: str,
                 warnings: Sequence[str] = ()) -> str:
    """`admin_key_at`: where the admin key is (its file, or the setting), never the key: the
    banner lands in terminals, scrollback and captured logs."""
    count = "" if products is None else f"  ({products} products searchable)"
    lines = ["", *warning_lines(warnings), _row("lookalike is ready:", run.app_url + count),
             _row("API docs:", run.app_url + "/docs"),
             _row("admin key (PUT/DELETE):", f"in {admin_key_at}"),
             *watch_lines(run),
             "", "  Press Ctrl-C to stop (or run `lookalike stop` in another terminal).", ""]
    return "\n".join(lines)
