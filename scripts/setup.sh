#!/usr/bin/env bash
# One-command set-up: a .venv with the package, a Chromium Playwright can drive, and Java for Flink.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

can_apt() { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; }
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    say "apt-get update"
    apt-get update -qq >/dev/null
    apt_updated=1
  fi
  say "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

find_python() {
  for py in "${PYTHON:-}" python3.11 python3.12 python3; do
    [ -n "$py" ] || continue
    if command -v "$py" >/dev/null 2>&1 &&
      "$py" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 12)))' 2>/dev/null; then
      echo "$py"
      return
    fi
  done
  die "Python 3.11 or 3.12 is needed (set PYTHON=/path/to/python3.11)"
}

# --- Python environment --------------------------------------------------------------------
stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  py=$(find_python)
  say "creating .venv with $py"
  "$py" -m venv .venv || { can_apt && apt_install python3-venv && "$py" -m venv .venv; } ||
    die "could not create a virtual environment (install the python3-venv package)"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing the package and its dev tools into .venv"
  # pip's build chatter goes to a log; it is shown only when the install fails.
  if ! { .venv/bin/python -m pip install -q --upgrade pip &&
    .venv/bin/python -m pip install -q -e '.[dev]'; } >.venv/pip.log 2>&1; then
    cat .venv/pip.log >&2
    die "installing the package failed (log above, also in .venv/pip.log)"
  fi
  touch "$stamp"
fi

# --- Chromium --------------------------------------------------------------------------------
managed_chromium() {
  .venv/bin/python - <<'PY' 2>/dev/null
import os, sys
from playwright.sync_api import sync_playwright
with sync_playwright() as p:
    path = p.chromium.executable_path
sys.exit(0 if os.path.exists(path) else 1)
PY
}
system_chromium() {
  local name
  for name in chromium chromium-browser google-chrome; do
    command -v "$name" >/dev/null 2>&1 && return 0
  done
  return 1
}
if ! managed_chromium && ! system_chromium; then
  say "no Chromium found; trying Playwright's managed browser"
  if ! .venv/bin/python -m playwright install chromium >/dev/null 2>&1; then
    if can_apt; then
      apt_install chromium
    else
      die "no Chromium: run 'python -m playwright install chromium', install your system's chromium package, or set browser.executable_path"
    fi
  fi
fi

# --- Java for Flink ----------------------------------------------------------------------------
java_major() {
  java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | cut -d. -f1
}
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 11 ] 2>/dev/null; then
  if can_apt; then
    apt_install openjdk-17-jre-headless
  else
    die "Flink needs Java 11 or newer (17 recommended): install a JRE and put java on PATH"
  fi
fi
