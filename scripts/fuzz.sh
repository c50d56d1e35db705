#!/usr/bin/env bash
# Fuzzes the parsers peers feed (issue 8), then minimizes the corpora.
#
# Usage: scripts/fuzz.sh [TARGET|all] [SECONDS]
#   TARGET   framer | stanza | jid | sasl, or all (the default), one after the other
#   SECONDS  fuzzing time per target (default 600)
# Environment: FUZZ_MAX_CORPUS_KB (default 2048) caps each minimized corpus: the largest
#   inputs are dropped until the inputs' total size fits.
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz from
# crates.io if it is missing. Runs one single-process libFuzzer at a time (the machine is
# shared). Each target reads fuzz/seeds/<target>/ (hand-written, readable inputs) and
# fuzz/corpus/<target>/, where new inputs go; `cargo fuzz cmin` then minimizes the corpus in
# place. A crash stops the script; the input is in fuzz/artifacts/<target>/: replay it with
# `cargo +nightly fuzz run <target> <file>`, and commit it there (`git add -f`) once fixed, so
# tests/fuzz_corpus.rs replays it on stable. Commit the minimized corpus with
# `git add fuzz/corpus/<target>` (deleted files included: `git add -A fuzz/corpus/<target>`).
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(framer stanza jid sasl)
which=${1:-all}
seconds=${2:-600}
max_kb=${FUZZ_MAX_CORPUS_KB:-2048}

if [ "$which" != all ]; then
  case " ${targets[*]} " in
    *" $which "*) targets=("$which") ;;
    *) echo "unknown target '$which' (one of: ${targets[*]}, all)" >&2; exit 2 ;;
  esac
fi
case "$seconds" in
  '' | *[!0-9]*) echo "SECONDS must be a number, got '$seconds'" >&2; exit 2 ;;
esac

rustup run nightly rustc --version >/dev/null 2>&1 || {
  echo "the nightly toolchain is required: rustup toolchain install nightly" >&2
  exit 1
}
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

dict_for() {
  case "$1" in
    framer | stanza) echo fuzz/dicts/xml.dict ;;
    *) echo "fuzz/dicts/$1.dict" ;;
  esac
}

for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  mkdir -p "$corpus"
  echo "== $target: fuzzing for ${seconds}s" >&2
  cargo +nightly fuzz run "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 -dict="$(dict_for "$target")"

  echo "== $target: minimizing $corpus" >&2
  cargo +nightly fuzz cmin "$target" "$corpus"
  # Drop the largest inputs until the corpus fits (they cost the most to replay and store).
  find "$corpus" -type f -printf '%s %p\n' | sort -n |
    awk -v max=$((max_kb * 1024)) '{ total += $1; if (total > max) { sub(/^[0-9]+ /, ""); print } }' |
    while IFS= read -r drop; do rm -f -- "$drop"; done
  bytes=$(find "$corpus" -type f -printf '%s\n' | awk '{ t += $1 } END { print t + 0 }')
  echo "== $target: $(find "$corpus" -type f | wc -l) inputs, $bytes bytes" >&2
done
