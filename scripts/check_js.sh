#!/usr/bin/env bash
# Syntax check of the project's JavaScript (the reader, the report's script, the demo app) with
# `node --check`. Without Node.js it says so and passes: the browser tests still run all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
files=(harvester/reader.js harvester/inspect/templates/report.js harvester/demo_site/app.js)
if ! command -v node >/dev/null 2>&1; then
  printf 'check_js: skipped, node is not installed (the browser tests still run these scripts): %s\n' "${files[*]}" >&2
  exit 0
fi
for file in "${files[@]}"; do
  node --check "$file"
done
