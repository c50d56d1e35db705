#!/usr/bin/env bash
# The test command from the README: formatting, lints, unit + end-to-end + interop tests, and
# a build of the fuzz target's library code and of the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "python3 is required for the interop tests" >&2; exit 1; }
python3 -c 'import venv, ensurepip' 2>/dev/null || {
  echo "installing python3-venv (needed by the slixmpp interop test)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null;
  else sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv >/dev/null; fi
}
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
cargo bench --workspace --no-run --locked
