#!/usr/bin/env bash
# Sets up what tests/interop_conversejs.rs needs and prints `chromium=PATH` and `node=PATH`:
#  - Debian's chromium (and fonts-liberation, so the screenshots have text), installed with
#    apt-get (as root, or with sudo) when /usr/bin/chromium is missing. Playwright never
#    downloads a browser of its own here: playwright-core drives this one.
#  - the pinned npm packages (package-lock.json), installed with `npm ci` into
#    node_modules/ (ignored by git) when missing or installed from another lock file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
# One setup at a time (test binaries may run in parallel).
exec 9>"$here/.setup.lock"
flock 9

command -v node >/dev/null || { echo "node is required (Node.js 20 or later)" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is required" >&2; exit 1; }

chromium=${CHROMIUM:-/usr/bin/chromium}
apt_packages=()
[ -x "$chromium" ] || apt_packages+=(chromium)
[ -d /usr/share/fonts/truetype/liberation ] || apt_packages+=(fonts-liberation)
if [ "${#apt_packages[@]}" -gt 0 ]; then
  echo "installing ${apt_packages[*]} with apt-get (for the Converse.js interop test)" >&2
  if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo -n); fi
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    "${apt_packages[@]}" >&2
fi
[ -x "$chromium" ] || { echo "no chromium at $chromium" >&2; exit 1; }

# node_modules/.xmppd-package-lock.json is the lock file node_modules was installed from.
if [ ! -d node_modules/converse.js/dist ] || [ ! -d node_modules/playwright-core ] ||
   ! cmp -s package-lock.json node_modules/.xmppd-package-lock.json; then
  echo "installing the pinned Converse.js and playwright-core (npm ci)" >&2
  rm -rf node_modules
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
  cp package-lock.json node_modules/.xmppd-package-lock.json
fi

echo "chromium=$chromium"
echo "node=$(command -v node)"
