#!/usr/bin/env bash
# Installs biboumi (Debian's XMPP–IRC gateway, an XEP-0114 component: 9.0 on Debian 12) for
# the interop test (tests/interop_biboumi.rs) and prints the path of its binary.
# Installed with apt-get (as root, or with sudo -n) when missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
lock="$here/../../target/interop-biboumi.lock"
mkdir -p "$(dirname "$lock")"
# One install at a time (test binaries may run in parallel).
exec 9>"$lock"
flock 9
bin="$(command -v biboumi || true)"
if [ -z "$bin" ] && [ -x /usr/bin/biboumi ]; then bin=/usr/bin/biboumi; fi
if [ -z "$bin" ]; then
  echo "installing biboumi (Debian's XMPP-IRC gateway, for the interop test)" >&2
  if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo -n); fi
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq biboumi >&2
  bin=/usr/bin/biboumi
fi
[ -x "$bin" ] || { echo "biboumi not found after install" >&2; exit 1; }
echo "$bin"
