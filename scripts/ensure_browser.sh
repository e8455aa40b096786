#!/usr/bin/env bash
# Headless Chromium and fonts for the browser tests, from Debian's packages (playwright never
# downloads a browser). Installs them when it can (root with apt-get); otherwise says exactly what
# to install, and under CI=true that is an error: a CI run must not pass by skipping a tier.
set -euo pipefail
CHROMIUM="${LOOKALIKE_CHROMIUM:-/usr/bin/chromium}"
FONTS=/usr/share/fonts/truetype/dejavu
PACKAGES="chromium fonts-dejavu-core"

have() { [ -x "$CHROMIUM" ] && [ -d "$FONTS" ]; }
ci() { case "${CI:-}" in true|TRUE|True|1|yes) return 0 ;; *) return 1 ;; esac; }

if have; then
  exit 0
fi
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing $PACKAGES for the browser tests (apt-get)"
  # apt's chatter goes to a log; a failure prints the log's end and stops make, never silently.
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  run() {
    if ! "$@" >"$log" 2>&1; then
      echo "error: '$*' failed; its last lines:" >&2
      tail -n 40 "$log" >&2
      exit 1
    fi
  }
  export DEBIAN_FRONTEND=noninteractive
  run apt-get update
  run apt-get install -y $PACKAGES
  if ! have; then
    echo "error: apt-get installed $PACKAGES but $CHROMIUM or $FONTS is still missing" >&2
    exit 1
  fi
  "$CHROMIUM" --version
  exit 0
fi
if command -v apt-get >/dev/null; then
  hint="sudo apt-get install $PACKAGES   (or run make as root)"
else
  hint="install Chromium and the DejaVu fonts with your system's package manager, and set LOOKALIKE_CHROMIUM to the chromium binary if it is not $CHROMIUM"
fi
if ci; then
  echo "error: CI=true and the browser tests cannot run: $CHROMIUM or $FONTS is missing." >&2
  echo "       $hint" >&2
  exit 1
fi
echo "note: the browser tests will be skipped: $CHROMIUM or $FONTS is missing."
echo "      $hint"
