//! Replays the fuzz corpora through the fuzz harnesses on stable Rust (issue 8).
//!
//! For each target, every file under `fuzz/seeds/<target>/`, `fuzz/corpus/<target>/` and
//! `fuzz/artifacts/<target>/` (crash inputs committed as regressions) goes through the same
//! `xmppd::fuzzing` function the fuzz target calls, so an input that once broke an invariant
//! fails here without a fuzzer. `scripts/fuzz.sh` grows and minimizes the corpora.

use std::fs;
use std::path::{Path, PathBuf};

/// Runs `harness` on every input of `target`; fails if there are none (a moved directory
/// would otherwise pass silently).
fn replay(target: &str, harness: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs: Vec<PathBuf> = ["seeds", "corpus", "artifacts"]
        .iter()
        .filter_map(|dir| fs::read_dir(fuzz.join(dir).join(target)).ok())
        .flatten()
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs for {target} under {fuzz:?}");
    for path in &inputs {
        let data = fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        if std::panic::catch_unwind(|| harness(&data)).is_err() {
            panic!("{target}: {path:?} breaks an invariant (see the panic above)");
        }
    }
}

#[test]
fn framer() {
    replay("framer", xmppd::fuzzing::framer);
}

#[test]
fn stanza() {
    replay("stanza", xmppd::fuzzing::stanza);
}

#[test]
fn jid() {
    replay("jid", xmppd::fuzzing::jid);
}

#[test]
fn sasl() {
    replay("sasl", xmppd::fuzzing::sasl);
}

/// Found by the `jid` target (issue 8), fixed in `xmpp::jid` (refused): a code point unassigned in
/// Unicode 3.2 (stringprep's version) passes Nodeprep/Nameprep as whatever current NFKC makes
/// of it, after case folding, so the result is not prepared. U+03F9 GREEK CAPITAL LUNATE SIGMA
/// SYMBOL becomes U+03A3 (uppercase Σ): `Jid::parse("sϹ2")` is `sΣ2`, which parses to `sσ2`,
/// another JID. The `stringprep` crate checks for unassigned code points after normalizing
/// instead of before. A JID must be refused or re-parse to itself. The fuzzer's input is
/// `fuzz/artifacts/jid/unassigned-u03f9`.
#[test]
fn jid_unassigned_code_points() {
    for input in ["s\u{3F9}2", "\u{3F9}@example.com", "u@\u{3F9}.example"] {
        if let Ok(j) = xmppd::xmpp::jid::Jid::parse(input) {
            assert_eq!(
                xmppd::xmpp::jid::Jid::parse(j.as_str()).as_ref(),
                Ok(&j),
                "{input:?}"
            );
        }
    }
}
