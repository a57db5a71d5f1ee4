#!/usr/bin/env bash
# Install headless Chromium and its WebDriver for tests/web/test_browser.py: Debian's chromium and
# chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver, same version), plus a font so the page's
# text renders. Idempotent: installs only what is missing. selenium itself comes from PyPI (the
# package's `test` extra). Without these, the browser tests skip and say so.
set -euo pipefail

packages=(chromium chromium-driver fonts-dejavu-core)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-chromium.sh: must run as root to install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# chromedriver refuses a browser of another major version: say so here, not in a test.
browser=$(chromium --version 2>/dev/null | grep -oE '[0-9]+' | head -1 || true)
driver=$(chromedriver --version 2>/dev/null | grep -oE '[0-9]+' | head -1 || true)
if [ -z "$browser" ] || [ "$browser" != "$driver" ]; then
    echo "install-chromium.sh: chromium ${browser:-missing} and chromedriver ${driver:-missing} do not match" >&2
    exit 1
fi
echo "chromium $browser and chromedriver $driver ready"
