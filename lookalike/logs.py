"""JSON log lines with the stdlib `logging` module: one object per line, for log shippers.

Reusable by every component: the router's request log ("lookalike.requests") and the ingest
job's summary ("lookalike.ingest") both go through `json_logger`:

    log = json_logger("lookalike.ingest")
    log.info("ingest finished", extra={"fields": {"rows": 1000, "rows_per_s": 250.0}})

prints `{"ts": "...", "level": "INFO", "logger": "lookalike.ingest", "message": "ingest
finished", "rows": 1000, "rows_per_s": 250.0}`.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

# The keys every line starts with; a record's own fields may not overwrite them, so a query on
# `level` or `ts` means the same thing for every component.
BASE_KEYS = ("ts", "level", "logger", "message")
_MARK = "_lookalike_json"  # tags the handlers json_logger added, so set-up is idempotent


def _clean(value: Any) -> Any:
    """NaN/inf are not JSON: a log line that a parser rejects is a lost line."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; `extra={"fields": {...}}` adds top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        out.update({
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        })
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        ordered = {k: out[k] for k in BASE_KEYS}
        ordered.update((k, v) for k, v in out.items() if k not in BASE_KEYS)
        # default=str: Paths, numpy scalars, dates are logged as text rather than dropping the line.
        return json.dumps(_clean(ordered), default=str, ensure_ascii=False, separators=(",", ":"))


def json_handler(*, stream: TextIO | None = None, path: Path | str | None = None,
                 max_bytes: int = 64 * 1024 * 1024, backup_count: int = 5) -> logging.Handler:
    """A handler writing JSON lines to `path` (rotated, so a soak cannot fill the disk) or to a
    stream (default: the process's real stderr, even where Ray Serve has swapped sys.stderr
    for a logger adapter, which would wrap each JSON line in its own text format)."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream or sys.__stderr__ or sys.stderr)
    handler.setFormatter(JsonFormatter())
    setattr(handler, _MARK, True)
    return handler


def json_logger(name: str, *, stream: TextIO | None = None, path: Path | str | None = None,
                level: int = logging.INFO) -> logging.Logger:
    """The named logger with exactly one JSON handler (calling again replaces it).

    propagate=False: the root logger (or Serve's) would print the same record again as text.
    """
    logger = logging.getLogger(name)
    for h in [h for h in logger.handlers if getattr(h, _MARK, False)]:
        logger.removeHandler(h)
        h.close()
    logger.addHandler(json_handler(stream=stream, path=path))
    logger.setLevel(level)
    logger.propagate = False
    return logger
