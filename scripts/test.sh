#!/usr/bin/env bash
# The test command from the README: formatting, lints, unit + end-to-end + interop tests, and
# a build of the fuzz target's library code and of the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "python3 is required for the interop tests" >&2; exit 1; }
python3 -c 'import venv, ensurepip' 2>/dev/null || {
  echo "installing python3-venv (needed by the slixmpp and aioxmpp interop tests)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null;
  else sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv >/dev/null; fi
}
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# No test may leave a server behind (issue 8): every server a test starts exits with its test
# binary (--exit-on-stdin-eof) or is killed by it. Allow the shutdown grace, then fail.
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
leftover() { pgrep -f "^$target_dir/debug/xmppd " || true; }
for _ in $(seq 1 50); do [ -z "$(leftover)" ] && break; sleep 0.2; done
if [ -n "$(leftover)" ]; then
  echo "xmppd processes left running by the tests:" >&2
  pgrep -af "^$target_dir/debug/xmppd " >&2 || true
  pkill -9 -f "^$target_dir/debug/xmppd " || true
  exit 1
fi
cargo bench --workspace --no-run --locked
