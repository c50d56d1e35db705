//! Roster storage in LMDB: reading a user's whole roster (what login and a roster get cost)
//! and writing one item with its version bump (what a roster set or a subscription change
//! costs), in an environment in a temporary directory holding 200 users with 50 contacts each.
//!
//! - `roster_load_50`: [`RosterStore::load`] of a 50-item roster: one read transaction, a
//!   prefix scan, decoding every item, the version and pending requests.
//! - `roster_write_sync`: [`Storage::write_sync`] of `put_roster_item` + `bump_roster_version`:
//!   one write transaction committed durably (fsync) on the calling thread, as admin tools do.
//! - `roster_write_submit`: the same write through [`Storage::submit`] and
//!   [`Completion::wait`](xmppd_storage::Completion::wait), the server's path: hand-off to the
//!   writer thread, commit, fsync, reply. A lone write pays a whole group commit.
//! - `roster_write_submit_64`: 64 such writes submitted together, then all awaited: the group
//!   commit shares the fsync. Reported per write.
//!
//! Durable writes measure the disk: the figures are for the filesystem the temporary
//! directory is on (`$TMPDIR`, else `/tmp`).
//!
//! Run with `cargo bench --bench storage`.

use std::cell::Cell;

use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use tempfile::TempDir;
use xmppd_storage::{Options, RosterItem, RosterStore, Storage, Subscription};

mod support;
use support::account;

fn main() {
    divan::main();
}

const USERS: usize = 200;
const ITEMS: usize = 50;
/// The user whose roster is read and written: one in the middle of the key space.
const USER: &str = "user100@example.com";

/// A fresh environment with [`USERS`] rosters of [`ITEMS`] items. Bind it as
/// `let (_dir, storage)` so that the environment closes before its directory is removed.
fn fixture() -> (TempDir, Storage) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let storage = Storage::open(dir.path(), &Options::default()).expect("open environment");
    storage
        .write_sync(|txn| {
            for u in 0..USERS {
                let user = format!("user{u}@example.com");
                // Writes of a user's records need the account (issue 8).
                txn.create_account(&user, &account(u as u64))?;
                for i in 0..ITEMS {
                    txn.put_roster_item(&user, &item(i, 0))?;
                }
                txn.bump_roster_version(&user)?;
            }
            Ok(())
        })
        .expect("populate");
    assert_eq!(
        storage.rosters().load(USER).expect("load").items.len(),
        ITEMS
    );
    (dir, storage)
}

/// Contact `i` of a roster; `rev` changes its name so that every write changes the record.
fn item(i: usize, rev: u64) -> RosterItem {
    RosterItem {
        jid: format!("contact{i:03}@example.org"),
        name: Some(format!("Contact {i} ({rev})")),
        groups: if i.is_multiple_of(3) {
            vec!["Friends".into(), "Work".into()]
        } else {
            vec!["Friends".into()]
        },
        subscription: if i.is_multiple_of(4) {
            Subscription::To
        } else {
            Subscription::Both
        },
        ask: false,
        approved: false,
    }
}

#[divan::bench]
fn roster_load_50(bencher: Bencher) {
    let (_dir, storage) = fixture();
    let rosters: RosterStore = storage.rosters();
    bencher
        .counter(ItemsCount::new(ITEMS))
        .bench_local(|| rosters.load(black_box(USER)).expect("load"));
}

#[divan::bench]
fn roster_write_sync(bencher: Bencher) {
    let (_dir, storage) = fixture();
    let rev = Cell::new(0u64);
    bencher.bench_local(|| {
        let next = item(7, rev.replace(rev.get() + 1));
        storage
            .write_sync(|txn| {
                txn.put_roster_item(USER, &next)?;
                txn.bump_roster_version(USER)
            })
            .expect("write")
    });
}

#[divan::bench]
fn roster_write_submit(bencher: Bencher) {
    let (_dir, storage) = fixture();
    let rev = Cell::new(0u64);
    bencher.bench_local(|| {
        let next = item(7, rev.replace(rev.get() + 1));
        storage
            .submit(move |txn| {
                txn.put_roster_item(USER, &next)?;
                txn.bump_roster_version(USER)
            })
            .wait()
            .expect("write")
    });
}

#[divan::bench]
fn roster_write_submit_64(bencher: Bencher) {
    const WRITES: usize = 64;
    let (_dir, storage) = fixture();
    let rev = Cell::new(0u64);
    bencher.counter(ItemsCount::new(WRITES)).bench_local(|| {
        let pending: Vec<_> = (0..WRITES)
            .map(|i| {
                let next = item(i % ITEMS, rev.replace(rev.get() + 1));
                storage.submit(move |txn| {
                    txn.put_roster_item(USER, &next)?;
                    txn.bump_roster_version(USER)
                })
            })
            .collect();
        pending.into_iter().map(|c| c.wait().expect("write")).max()
    });
}
