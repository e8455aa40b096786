#!/usr/bin/env bash
# The demo: start milvus-lite, build and ingest the demo catalogue, serve the app, print the URL.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export LOOKALIKE_DATA_DIR="${LOOKALIKE_DATA_DIR:-data}"
export LOOKALIKE_PORT="${LOOKALIKE_PORT:-8000}"
PRODUCTS="${DEMO_PRODUCTS:-2000}"
CATALOGUE="$LOOKALIKE_DATA_DIR/demo"

cleanup() {
  trap - EXIT INT TERM
  [ -n "${SERVE_PID:-}" ] && kill -INT "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null || true
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

sed "s/port: 8000/port: $LOOKALIKE_PORT/" serve_config.yaml > "$LOOKALIKE_DATA_DIR/serve_config.yaml"
RAY_SERVE_THROUGHPUT_OPTIMIZED=1 .venv/bin/serve run "$LOOKALIKE_DATA_DIR/serve_config.yaml" &
SERVE_PID=$!
URL="http://127.0.0.1:$LOOKALIKE_PORT"
for _ in $(seq 1 180); do
  if curl -fsS "$URL/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$SERVE_PID" 2>/dev/null || { echo "serve run exited"; exit 1; }
  sleep 1
done
curl -fsS "$URL/readyz"; echo
cat <<MSG

  lookalike is ready:  $URL
  API docs:            $URL/docs
  admin key (PUT/DELETE): $(cat "$LOOKALIKE_DATA_DIR/admin.key" 2>/dev/null || echo "\$LOOKALIKE_ADMIN_KEY")

  Press Ctrl-C to stop.
MSG
wait "$SERVE_PID"
