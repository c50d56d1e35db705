#!/usr/bin/env bash
# Sets up aioxmpp's own end-to-end test suite for tests/interop_aioxmpp.rs and prints two lines:
#   python=PATH   a virtualenv's interpreter with the pinned aioxmpp from PyPI and pytest
#                 (requirements.txt beside this script)
#   tests=DIR     a directory holding upstream's tests/ of the same release (and an empty
#                 pytest.ini, so that pytest looks no further up for a configuration)
#
# PyPI's aioxmpp sdist and wheel ship no tests. The release tarball that has them is the one
# Debian packages: the source package python-aioxmpp (its .orig.tar.gz is upstream's tagged
# release; its aioxmpp/ is byte for byte the PyPI release). It is fetched with apt-get source
# through a private apt configuration under target/ (the system's sources are not touched),
# checked against the SHA-256 pinned below, and only its tests/ is unpacked: the library under
# test is always the PyPI one in the virtualenv.
#
# Everything lands under target/ and is done once per change of the pins; concurrent callers
# wait for each other.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${XMPPD_INTEROP_TARGET:-$here/../../../target}"
mkdir -p "$target"
target="$(cd "$target" && pwd)"
venv="$target/interop-venv-aioxmpp"

# The upstream release whose tests run; keep in step with aioxmpp== in requirements.txt.
version=0.13.3
debian_suite=bookworm
debian_version="$version-1"
orig="python-aioxmpp_$version.orig.tar.gz"
orig_sha256=b8f06c21a8429286bf2ef26e4617a2e772df74566a0aa3d4c9501f8f50b6735a
tests="$target/interop-aioxmpp-tests-$version"

grep -qx "aioxmpp==$version" "$here/requirements.txt" || {
  echo "requirements.txt does not pin aioxmpp==$version (setup.sh's version)" >&2
  exit 2
}

exec 9>"$venv.lock"
flock 9

# 1. The library and the test runner, from PyPI.
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
  cp "$here/requirements.txt" "$venv/requirements.txt"
fi

# 2. Upstream's tests of the same release, from Debian's source package.
if [ ! -f "$tests/.complete" ]; then
  work="$target/interop-aioxmpp-apt"
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
  if [ ! -f "$work/src/$orig" ] ||
    ! echo "$orig_sha256  $work/src/$orig" | sha256sum --check --status; then
    command -v apt-get >/dev/null || { echo "apt-get is needed to fetch aioxmpp's tests" >&2; exit 1; }
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -r "$keyring" ] || { echo "$keyring is needed to fetch aioxmpp's tests" >&2; exit 1; }
    echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian $debian_suite main" \
      >"$work/sources.list"
    apt=(
      -o "Dir::Etc::SourceList=$work/sources.list"
      -o "Dir::Etc::SourceParts=$work/sources.list.d"
      -o "Dir::State::Lists=$work/lists"
      -o "Dir::Cache=$work/cache"
    )
    # As root apt hands downloads to the _apt user, who cannot write under target/.
    if [ "$(id -u)" = 0 ]; then apt+=(-o "APT::Sandbox::User=root"); fi
    mkdir -p "$work/sources.list.d"
    echo "fetching aioxmpp $version's tests (Debian source package python-aioxmpp)" >&2
    apt-get "${apt[@]}" -qq update >&2
    rm -f "$work/src/$orig"
    (cd "$work/src" &&
      apt-get "${apt[@]}" -qq source --download-only --tar-only \
        "python-aioxmpp=$debian_version" >&2)
    echo "$orig_sha256  $work/src/$orig" | sha256sum --check --status || {
      echo "$orig does not have the pinned SHA-256 $orig_sha256" >&2
      exit 1
    }
  fi
  rm -rf "$tests"
  mkdir -p "$tests"
  tar -xzf "$work/src/$orig" -C "$tests" tests
  printf '[pytest]\n' >"$tests/pytest.ini"
  touch "$tests/.complete"
fi

echo "python=$venv/bin/python"
echo "tests=$tests"
