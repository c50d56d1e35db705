//! [`Jid::parse`]: split and prepare a JID, as done for the `to` and `from` of every routed
//! stanza. Pure-ASCII parts take the fast path (no `stringprep`, no allocation beyond the
//! JID's own string); a non-ASCII part goes through full Nodeprep / Nameprep / Resourceprep.
//!
//! Cases: an ASCII bare JID, an ASCII full JID, an ASCII full JID with uppercase letters (the
//! lowercasing copy), and a non-ASCII full JID (stringprep on all three parts).
//!
//! Run with `cargo bench --bench jid`; reported per JID.

use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use xmppd::xmpp::jid::Jid;

fn main() {
    divan::main();
}

const CASES: [(&str, &str); 4] = [
    ("ascii_bare", "juliet@capulet.example"),
    ("ascii_full", "juliet@capulet.example/balcony-4f2a9c"),
    ("ascii_full_upper", "Juliet@Capulet.Example/Balcony"),
    (
        "stringprep_full",
        "Jürgen.Müller@Bücher.example/Büro Straße",
    ),
];

/// One case per argument, named so that the output reads `parse ascii_bare`.
#[divan::bench(args = ["ascii_bare", "ascii_full", "ascii_full_upper", "stringprep_full"])]
fn parse(bencher: Bencher, case: &str) {
    let input = CASES
        .iter()
        .find(|(name, _)| *name == case)
        .map(|(_, jid)| *jid)
        .expect("known case");
    assert!(Jid::parse(input).is_ok(), "{input} does not parse");
    bencher
        .counter(ItemsCount::new(1usize))
        .bench(|| Jid::parse(black_box(input)));
}
