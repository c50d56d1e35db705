#!/usr/bin/env bash
# Creates (once) the Python virtualenv for the interop tests and installs the pinned client
# libraries from PyPI. Prints the interpreter path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${XMPPD_INTEROP_VENV:-$here/../../target/interop-venv}"
mkdir -p "$(dirname "$venv")"
# One setup at a time (test binaries may run in parallel).
exec 9>"$venv.lock"
flock 9
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
  cp "$here/requirements.txt" "$venv/requirements.txt"
fi
echo "$venv/bin/python"
