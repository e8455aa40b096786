#!/usr/bin/env bash
# The demo, as `make demo` runs it: `lookalike demo` (lookalike/cli.py) starts milvus-lite and a
# local Ray, serves the app, builds and ingests the demo catalogue, prints the URLs; Ctrl-C
# stops everything it started. DEMO_PRODUCTS (default 2000) sets the catalogue size.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m lookalike.cli demo "$@"
