//! The privacy filter (XEP-0016 lists, XEP-0191 blocklist) per stanza, through
//! `xmppd::modules::privacy::list`: what one inbound message costs the filter for the account
//! it is addressed to. The peer is a full JID (`romeo@example.net/orchard`), as the `from` of
//! a routed message is.
//!
//! - `no_list`: an online account without lists keeps no filter state at all; the server's
//!   decision is an `Option` check on the account's session entry (private to the module), so
//!   this measures the nearest public path instead: [`Compiled::check`] of an *empty* list.
//! - `blocklist_miss` / `blocklist_hit` (20 and 1000 entries): [`Compiled::check`] of a
//!   default list made only of blocklist entries (`blocked{i}@blocked.example`), what an
//!   online account with a blocklist costs. A miss is the sieve's test of the peer's bare
//!   JID (with 20 entries; the 1000-entry sieve is full, so a miss there takes the hash
//!   lookup too); a hit is the sieve's test and one hash lookup.
//! - `mixed_20_evaluate` / `mixed_20_compiled`: a 20-rule XEP-0016 list (jid, group and
//!   subscription items with and without stanza kinds, no fall-through item) that matches
//!   nothing, so it is walked to the end: [`evaluate`] and [`Compiled::check`] (the same walk,
//!   no leading blocklist entries to hash). The roster facts come from an in-memory closure,
//!   called once per decision; on the server that call is one LMDB read of the roster item.
//! - `offline_1000_*`: an offline account's default list of 1000 blocklist entries.
//!   `offline_1000_kept_*` is what the server does per stanza for it once it has seen the list
//!   (`offline` in `src/modules/privacy/mod.rs`): compare the stored record with its kept copy
//!   ([`PrivacyStore::default_list_since`]: one read transaction, two gets, a byte
//!   comparison) and check the compiled copy. `offline_1000_*` is what it did before it kept
//!   copies, and still does for a list it has not seen (plus compiling it): read the list from
//!   LMDB ([`PrivacyStore::default_list`]: decoding 1000 items) and [`evaluate`] it in order.
//!   `offline_1000_read` is the read alone, `evaluate_1000_miss` / `evaluate_1000_hit` the walk
//!   alone (a miss compares against all 1000 entries; the hit is entry 777).
//!
//! Run with `cargo bench --bench privacy`; reported per stanza.

use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use tempfile::TempDir;
use xmppd::modules::privacy::list::{self, Compiled, RosterFacts, Verdict, What};
use xmppd::xmpp::jid::JidStr;
use xmppd_storage::{
    privacy_stanzas as bits, DefaultList, Options, PrivacyItem, PrivacyList, PrivacyMatch,
    PrivacyStore, Storage, Subscription,
};

mod support;
use support::account;

fn main() {
    divan::main();
}

/// The sender of every stanza: not blocked, in the roster (`both`, group Friends).
const PEER: &str = "romeo@example.net/orchard";
/// The account whose list decides.
const USER: &str = "juliet@capulet.example";

/// A blocked sender, by entry index (as a full JID: the bare entry matches it).
fn blocked_peer(i: usize) -> String {
    format!("blocked{i}@blocked.example/res")
}

/// A default list of `n` blocklist entries, as XEP-0191 writes it.
fn blocklist(n: usize) -> PrivacyList {
    PrivacyList {
        name: list::BLOCKLIST_NAME.into(),
        items: (0..n)
            .map(|i| PrivacyItem {
                order: i as u32,
                allow: false,
                what: PrivacyMatch::Jid(format!("blocked{i}@blocked.example")),
                stanzas: 0,
            })
            .collect(),
    }
}

/// 20 XEP-0016 rules, none of which matches [`PEER`] for a message: jid items (full, bare,
/// domain, domain/resource), group and subscription items, some limited to other kinds.
fn mixed_20() -> PrivacyList {
    use PrivacyMatch::{Group, Jid, Subscription as Sub};
    let j = |s: &str| Jid(s.into());
    let g = |s: &str| Group(s.into());
    let what = [
        (true, j("nurse@capulet.example/chamber"), 0),
        (false, j("tybalt@capulet.example"), bits::MESSAGE),
        (true, g("Family"), 0),
        (false, j("montague.example"), 0),
        (false, Sub(Subscription::None), bits::MESSAGE),
        (true, j("capulet.example/bot"), bits::IQ),
        (false, g("Work"), bits::MESSAGE),
        (false, j("paris@verona.example"), 0),
        (true, Sub(Subscription::To), bits::PRESENCE_IN),
        (false, j("friar@verona.example/cell"), bits::MESSAGE),
        (false, g("Enemies"), 0),
        (false, Sub(Subscription::From), bits::MESSAGE),
        (true, j("verona.example"), bits::PRESENCE_OUT),
        (false, j("mercutio@example.net"), bits::MESSAGE),
        (false, g("Friends"), bits::IQ),
        (true, j("example.org"), 0),
        (false, Sub(Subscription::Both), bits::PRESENCE_OUT),
        (false, j("benvolio@example.net/street"), 0),
        (false, g("Servants"), bits::MESSAGE),
        (false, j("example.net/bot"), 0),
    ];
    PrivacyList {
        name: "public".into(),
        items: what
            .into_iter()
            .enumerate()
            .map(|(i, (allow, what, stanzas))| PrivacyItem {
                order: i as u32 * 10,
                allow,
                what,
                stanzas,
            })
            .collect(),
    }
}

/// The roster as the filter asks it: [`PEER`] is `both` in Friends.
fn roster(bare: &str) -> Result<RosterFacts, ()> {
    Ok(match bare {
        "romeo@example.net" => RosterFacts {
            subscription: Some(Subscription::Both),
            groups: vec!["Friends".into()],
        },
        _ => RosterFacts::default(),
    })
}

/// No roster read expected (blocklist entries never need one).
fn no_roster(_: &str) -> Result<RosterFacts, ()> {
    panic!("a blocklist entry read the roster")
}

fn check(c: &Compiled, peer: &str) -> Verdict {
    c.check(What::Message, JidStr::trusted(peer), &mut no_roster)
}

#[divan::bench]
fn no_list(bencher: Bencher) {
    let c = Compiled::new(&blocklist(0));
    assert!(c.is_empty());
    assert_eq!(check(&c, PEER), Verdict::Allow);
    bencher
        .counter(ItemsCount::new(1usize))
        .bench_local(|| check(&c, black_box(PEER)));
}

#[divan::bench(args = [20, 1000])]
fn blocklist_miss(bencher: Bencher, n: usize) {
    let c = Compiled::new(&blocklist(n));
    assert_eq!(check(&c, PEER), Verdict::Allow);
    bencher
        .counter(ItemsCount::new(1usize))
        .bench_local(|| check(&c, black_box(PEER)));
}

#[divan::bench(args = [20, 1000])]
fn blocklist_hit(bencher: Bencher, n: usize) {
    let c = Compiled::new(&blocklist(n));
    let peer = blocked_peer(n * 7 / 10);
    assert_eq!(check(&c, &peer), Verdict::Deny { blocked: true });
    bencher
        .counter(ItemsCount::new(1usize))
        .bench_local(|| check(&c, black_box(&peer)));
}

#[divan::bench]
fn mixed_20_evaluate(bencher: Bencher) {
    let l = mixed_20();
    let peer = JidStr::trusted(PEER);
    let mut reads = 0;
    let mut counting = |bare: &str| {
        reads += 1;
        roster(bare)
    };
    let v = list::evaluate(&l, What::Message, peer, &mut counting);
    assert_eq!(
        (v, reads),
        (Verdict::Allow, 1),
        "walked to the end, one roster read"
    );
    bencher
        .counter(ItemsCount::new(1usize))
        .bench_local(|| list::evaluate(&l, What::Message, black_box(peer), &mut roster));
}

#[divan::bench]
fn mixed_20_compiled(bencher: Bencher) {
    let c = Compiled::new(&mixed_20());
    let peer = JidStr::trusted(PEER);
    assert_eq!(c.check(What::Message, peer, &mut roster), Verdict::Allow);
    bencher
        .counter(ItemsCount::new(1usize))
        .bench_local(|| c.check(What::Message, black_box(peer), &mut roster));
}

#[divan::bench]
fn evaluate_1000_miss(bencher: Bencher) {
    let l = blocklist(1000);
    let peer = JidStr::trusted(PEER);
    assert_eq!(
        list::evaluate(&l, What::Message, peer, &mut no_roster),
        Verdict::Allow
    );
    bencher
        .counter(ItemsCount::new(1usize))
        .bench_local(|| list::evaluate(&l, What::Message, black_box(peer), &mut no_roster));
}

#[divan::bench]
fn evaluate_1000_hit(bencher: Bencher) {
    let l = blocklist(1000);
    let peer = blocked_peer(777);
    let peer = JidStr::trusted(&peer);
    assert!(list::evaluate(&l, What::Message, peer, &mut no_roster).denies());
    bencher
        .counter(ItemsCount::new(1usize))
        .bench_local(|| list::evaluate(&l, What::Message, black_box(peer), &mut no_roster));
}

/// An environment in a temporary directory where [`USER`] has a default list of 1000
/// blocklist entries (and 200 other users have a 20-entry one). Bind it as
/// `let (_dir, store)` so that the environment closes before its directory is removed.
fn offline_fixture() -> (TempDir, PrivacyStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let storage = Storage::open(dir.path(), &Options::default()).expect("open environment");
    storage
        .write_sync(|txn| {
            for u in 0..200u64 {
                let user = format!("user{u}@capulet.example");
                txn.create_account(&user, &account(u))?;
                txn.put_privacy_list(&user, &blocklist(20))?;
                txn.set_privacy_default(&user, Some(list::BLOCKLIST_NAME))?;
            }
            txn.create_account(USER, &account(1000))?;
            txn.put_privacy_list(USER, &blocklist(1000))?;
            txn.set_privacy_default(USER, Some(list::BLOCKLIST_NAME))
        })
        .expect("populate");
    let store = storage.privacy();
    let l = store.default_list(USER).expect("read").expect("a default");
    assert_eq!(l.items.len(), 1000);
    (dir, store)
}

#[divan::bench]
fn offline_1000_read(bencher: Bencher) {
    let (_dir, store) = offline_fixture();
    bencher
        .counter(ItemsCount::new(1usize))
        .bench_local(|| store.default_list(black_box(USER)).expect("read"));
}

/// What the server did per stanza for an offline account before it kept compiled copies
/// (and does for a list it has not seen yet, plus compiling it): read, then walk.
#[divan::bench(args = ["miss", "hit"])]
fn offline_1000(bencher: Bencher, case: &str) {
    let (_dir, store) = offline_fixture();
    let peer = match case {
        "miss" => PEER.to_owned(),
        _ => blocked_peer(777),
    };
    let peer = JidStr::trusted(&peer);
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        let l = store.default_list(black_box(USER)).expect("read");
        l.map(|l| list::evaluate(&l, What::Message, peer, &mut no_roster))
    });
}

/// What the server does per stanza for an offline account whose default list it has seen:
/// the stored record compared with its kept copy (`default_list_since`: one read snapshot,
/// two gets, a byte comparison), then the compiled check.
#[divan::bench(args = ["miss", "hit"])]
fn offline_1000_kept(bencher: Bencher, case: &str) {
    let (_dir, store) = offline_fixture();
    let DefaultList::Changed { list: l, record } = store.default_list_since(USER, None).unwrap()
    else {
        panic!("a default list");
    };
    let (name, compiled) = (l.name.clone(), Compiled::new(&l));
    let peer = match case {
        "miss" => PEER.to_owned(),
        _ => blocked_peer(777),
    };
    let peer = JidStr::trusted(&peer);
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        let now = store.default_list_since(black_box(USER), Some((&name, &record)));
        assert_eq!(now.expect("read"), DefaultList::Unchanged);
        compiled.check(What::Message, peer, &mut no_roster)
    });
}
