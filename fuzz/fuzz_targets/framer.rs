//! Fuzz target `framer`: a one-line call; the harness and its invariants are
//! `xmppd::fuzzing::framer` (replayed on stable by `tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xmppd::fuzzing::framer(data));
