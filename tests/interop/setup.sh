#!/usr/bin/env bash
# Sets up a slixmpp for the interop tests and prints the Python interpreter to run them with.
#   setup.sh [pypi]  creates (once) a virtualenv with the pinned slixmpp from PyPI
#                    (requirements.txt)
#   setup.sh debian  Debian's python3-slixmpp for the system /usr/bin/python3 (1.8.3 on
#                    Debian 12), installed with apt-get (as root, or with sudo) when missing
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
flavour="${1:-pypi}"
venv="${XMPPD_INTEROP_VENV:-$here/../../target/interop-venv}"
mkdir -p "$(dirname "$venv")"
# One setup at a time (test binaries may run in parallel).
exec 9>"$venv.lock"
flock 9
case "$flavour" in
  pypi)
    if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
      rm -rf "$venv"
      python3 -m venv "$venv" >&2
      "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
      cp "$here/requirements.txt" "$venv/requirements.txt"
    fi
    echo "$venv/bin/python"
    ;;
  debian)
    # The system interpreter, not whatever python3 is first on PATH (pyenv, a venv): Debian's
    # package installs into /usr/lib/python3/dist-packages, which only it sees.
    python=/usr/bin/python3
    if ! "$python" -c 'import slixmpp' 2>/dev/null; then
      echo "installing python3-slixmpp (Debian's slixmpp, for the interop test)" >&2
      if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo -n); fi
      "${sudo[@]}" apt-get update -qq >&2
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-slixmpp >&2
    fi
    echo "$python"
    ;;
  *)
    echo "usage: $0 [pypi|debian]" >&2
    exit 2
    ;;
esac
