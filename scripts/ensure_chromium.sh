#!/usr/bin/env bash
# The browser test drives Debian's chromium through playwright (never playwright's own browser
# download, which cannot work offline). Install it when it is missing and apt-get can.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }) \
    && echo "installed chromium" && exit 0
fi
echo "warning: chromium is not installed and could not be installed (apt-get as root); the browser test will fail" >&2
