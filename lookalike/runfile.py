"""The record of a running `lookalike serve` / `lookalike demo`, in its data dir.

`lookalike status`, `lookalike stop` and `lookalike ingest` find the running app through it:
its process, the URLs of the app, the Ray dashboard and the metrics endpoint. One per data dir,
as the app's other state (milvus-lite data, admin key) is.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from lookalike.procs import alive

NAME = "lookalike.run.json"


@dataclass(frozen=True)
class RunRecord:
    pid: int
    command: str  # "serve" or "demo"
    app_url: str
    dashboard_url: str
    metrics_url: str
    gcs_address: str
    collection: str
    started_at: str

    def is_alive(self) -> bool:
        return alive(self.pid)


def path_for(data_dir: Path) -> Path:
    return Path(data_dir) / NAME


def write(data_dir: Path, record: RunRecord) -> None:
    path = path_for(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=1))
    os.replace(tmp, path)  # readers never see half a record


def read(data_dir: Path) -> RunRecord | None:
    """The record of a process still running; a stale one (a killed run) reads as None."""
    try:
        record = RunRecord(**json.loads(path_for(data_dir).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return record if record.is_alive() else None


def remove(data_dir: Path, pid: int) -> None:
    """Only our own record: a newer run in the same data dir keeps its own."""
    path = path_for(data_dir)
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass
