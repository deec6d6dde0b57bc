#!/usr/bin/env bash
# Headless Chromium and its WebDriver from Debian's packages, for the
# browser test of `atheria serve` (crates/atheria-serve/tests/browser.rs).
# Installs them with apt-get when missing; nothing is downloaded at test time.
set -euo pipefail
if command -v chromium >/dev/null && { command -v chromedriver >/dev/null || [ -x /usr/lib/chromium/chromedriver ]; }; then
  exit 0
fi
echo "== installing chromium and chromium-driver (apt-get)"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium chromium-driver
