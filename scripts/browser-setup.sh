#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (Playwright drives it; no browser download).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
SUDO=""; [ "$(id -u)" = "0" ] || SUDO="sudo"
echo "installing Chromium (Debian package chromium)..." >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >&2
