"""The ingest job as a Ray job on a running `lookalike serve` / `demo`: it then shows in the
dashboard's Jobs page, with its logs, as `ray job submit -- python ingest_job.py` would."""

from __future__ import annotations

import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from lookalike.dashboard import auth_headers

POLL_S = 1.0
AGENT_WAIT_S = 60.0


def _client(dashboard_url: str):
    from ray.job_submission import JobSubmissionClient

    # Headers of our own: a process that never ran ray.init has no token mode switched on,
    # and Ray's client would then send none.
    return JobSubmissionClient(dashboard_url, headers=auth_headers())


def submit_ingest(dashboard_url: str, manifest: Path, extra_args: list[str], *,
                  gcs_address: str = "") -> str:
    # `-m lookalike.app.ingest_job`: the wheel installs the entry module there and a checkout
    # maps the name onto its top-level ingest_job.py (lookalike/__init__.py). Absolute paths: the job's cwd is Ray's.
    # The cluster's own address, explicitly: Ray hands a job's driver RAY_ADDRESS=auto, which
    # with a second Ray on the host (seen in the test suite) can resolve to the other one.
    address = ["--ray-address", gcs_address] if gcs_address else []
    entrypoint = shlex.join([sys.executable, "-m", "lookalike.app.ingest_job", "--manifest",
                             str(Path(manifest).resolve()), *address, *extra_args])
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    client = _client(dashboard_url)
    # Right after ray.init the dashboard answers before its node agent has registered
    # ("No available agent to submit job, please try again later"): retry for a while.
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            return client.submit_job(
                entrypoint=entrypoint, submission_id=f"lookalike-ingest-{stamp}",
                metadata={"lookalike": "ingest", "manifest": Path(manifest).name})
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(1)


def follow(dashboard_url: str, job_id: str, out: TextIO = sys.stdout) -> str:
    """Print the job's log as it grows; returns its final status (SUCCEEDED, FAILED, STOPPED)."""
    from ray.job_submission import JobStatus

    client = _client(dashboard_url)
    shown = 0
    try:
        while True:
            status = client.get_job_status(job_id)
            logs = client.get_job_logs(job_id)
            out.write(logs[shown:])
            out.flush()
            shown = len(logs)
            if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                return str(status.value)
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        print(f"\nstopping the ingest job {job_id}", file=out, flush=True)
        client.stop_job(job_id)
        raise
