#!/usr/bin/env bash
# The demo: start milvus-lite, build and ingest the demo catalogue, serve the app, print the URL.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export LOOKALIKE_DATA_DIR="${LOOKALIKE_DATA_DIR:-data}"
export LOOKALIKE_PORT="${LOOKALIKE_PORT:-8000}"
# The local Ray that `serve run` and the ingest job start: its node on 127.0.0.1, not the LAN
# address (Ray's own switch; it names Windows/OSX but works on Linux too).
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="${RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER:-0}"
PRODUCTS="${DEMO_PRODUCTS:-2000}"
CATALOGUE="$LOOKALIKE_DATA_DIR/demo"

cleanup() {
  trap - EXIT INT TERM
  [ -n "${WATCH_PID:-}" ] && kill "$WATCH_PID" 2>/dev/null || true
  $PY -m lookalike.store.lite_server stop >/dev/null 2>&1 || true
  echo "demo stopped"
}
trap cleanup EXIT INT TERM

$PY -m lookalike.store.lite_server start
if [ ! -f "$CATALOGUE/manifest.jsonl" ] || [ "$(wc -l < "$CATALOGUE/manifest.jsonl")" -ne "$PRODUCTS" ]; then
  $PY -m lookalike.catalog.demo --out "$CATALOGUE" --products "$PRODUCTS"
fi
# Idempotent: a second demo run finds every product unchanged and embeds nothing.
$PY ingest_job.py --manifest "$CATALOGUE/manifest.jsonl"

CONFIG="$LOOKALIKE_DATA_DIR/serve_config.yaml"
sed "s/port: 8000/port: $LOOKALIKE_PORT/" serve_config.yaml > "$CONFIG"
URL="http://127.0.0.1:$LOOKALIKE_PORT"

# Prints the URL once the app answers. In the background, so that `serve run` stays in the
# foreground: Ctrl-C then reaches it directly (background jobs of a script ignore SIGINT).
announce() {
  for _ in $(seq 1 300); do
    if curl -fsS "$URL/readyz" >/dev/null 2>&1; then
      curl -fsS "$URL/readyz"; echo
      printf '\n  lookalike is ready:  %s\n  API docs:            %s/docs\n' "$URL" "$URL"
      printf '  admin key (PUT/DELETE): %s\n\n  Press Ctrl-C to stop.\n' \
        "$(cat "$LOOKALIKE_DATA_DIR/admin.key" 2>/dev/null || echo "\$LOOKALIKE_ADMIN_KEY")"
      return 0
    fi
    sleep 1
  done
  echo "the app did not become ready in 300 s; see the log above" >&2
}
announce &
WATCH_PID=$!
RAY_SERVE_THROUGHPUT_OPTIMIZED=1 .venv/bin/serve run "$CONFIG"
