"""The Ray Data ingest job (see lookalike.ingest.pipeline and ingest_job.py at the repo root).

Ray is imported lazily: the pure helpers (fetch, plan, summary, worklist) load without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["IngestOptions", "run_ingest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lookalike.ingest import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
