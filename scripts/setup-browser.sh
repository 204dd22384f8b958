#!/usr/bin/env bash
# Installs what the annotation page's browser test needs from Debian: the `chromium` package, only when no
# chromium is on PATH. Playwright (the Python driver, from the dev extra) starts this browser through
# executable_path; it never downloads its own, so `playwright install` is not run. CI runs this as root.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "chromium: $(command -v chromium)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y chromium
echo "chromium: $(command -v chromium)"
