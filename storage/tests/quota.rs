//! Offline quotas on a real environment: the byte quota, the map reserve, chunked reads, the
//! map gauge, and counters written before the byte quota existed.

mod common;

use common::{account, write, TempDir};
use xmppd_storage::{
    OfflineFull, OfflinePush, OfflineQuota, Options, Storage, StorageError, Table,
};

const ME: &str = "juliet@example.com";
const OTHER: &str = "nurse@example.com";

fn open_small(dir: &TempDir, map_size: usize) -> Storage {
    let opts = Options {
        map_size,
        ..Options::default()
    };
    let s = Storage::open(&dir.path().join("data"), &opts).unwrap();
    common::users(&s, &[ME, OTHER]);
    s
}

fn push(s: &Storage, user: &str, len: usize, quota: &OfflineQuota) -> OfflinePush {
    let (user, quota) = (user.to_owned(), quota.clone());
    write(s, move |t| {
        t.push_offline_within(
            &user,
            1,
            "romeo@example.net/orchard",
            &vec![b'x'; len],
            &quota,
        )
    })
}

fn no_reserve(max_messages: usize, max_bytes: u64) -> OfflineQuota {
    OfflineQuota {
        max_messages,
        max_bytes,
        reserve: None,
    }
}

#[test]
fn byte_quota_refuses_per_user_and_frees_on_delete() {
    let dir = TempDir::new("quota-bytes");
    let s = open_small(&dir, 64 << 20);
    let quota = no_reserve(1000, 10_000);
    let mut stored = Vec::new();
    loop {
        match push(&s, ME, 1000, &quota) {
            OfflinePush::Stored(seq) => stored.push(seq),
            OfflinePush::Full(full) => {
                assert_eq!(full, OfflineFull::Bytes);
                break;
            }
        }
    }
    // Each message takes its 1000 bytes plus the sender, stamp and key.
    assert_eq!(stored.len(), 9);
    let bytes = s.offline().bytes(ME).unwrap();
    assert!(bytes <= 10_000 && bytes > 9_000, "{bytes}");
    // Another user has a quota of their own.
    assert!(matches!(
        push(&s, OTHER, 1000, &quota),
        OfflinePush::Stored(_)
    ));
    // The count limit is checked first.
    assert_eq!(
        push(&s, ME, 1, &no_reserve(9, u64::MAX)),
        OfflinePush::Full(OfflineFull::Messages)
    );
    // Deleting frees the bytes exactly.
    let some = stored[..3].to_vec();
    assert_eq!(write(&s, move |t| t.delete_offline(ME, &some)), 3);
    let after = s.offline().bytes(ME).unwrap();
    assert_eq!(bytes - after, 3 * (bytes / 9));
    assert!(matches!(push(&s, ME, 1000, &quota), OfflinePush::Stored(_)));
    let all: Vec<u64> = s
        .offline()
        .list(ME)
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    write(&s, move |t| t.delete_offline(ME, &all));
    assert_eq!(s.offline().bytes(ME).unwrap(), 0);
    assert_eq!(s.offline().count(ME).unwrap(), 0);
}

#[test]
fn map_reserve_refuses_offline_while_accounts_still_fit() {
    let dir = TempDir::new("quota-reserve");
    let s = open_small(&dir, 4 << 20);
    let reserve = 1 << 20;
    let quota = OfflineQuota {
        max_messages: 100_000,
        max_bytes: u64::MAX,
        reserve: Some((s.map_gauge(), reserve)),
    };
    let empty = s.map_usage().unwrap();
    assert_eq!(empty.map_bytes, 4 << 20);
    assert!(empty.percent_used() < 5, "{empty:?}");
    let mut stored = 0;
    let refused = loop {
        match push(&s, ME, 20_000, &quota) {
            OfflinePush::Stored(_) => stored += 1,
            OfflinePush::Full(full) => break full,
        }
        assert!(stored < 1000, "never refused");
    };
    assert_eq!(refused, OfflineFull::Map);
    let full = s.map_usage().unwrap();
    assert!(full.free_bytes() >= reserve - 20_000, "{full:?}");
    assert!(full.percent_used() >= 60, "{full:?}");
    assert!(full.warning_level().is_some() || full.percent_used() < 80);
    // The reserve is there for essential writes.
    for n in 0..100 {
        s.accounts()
            .create(&format!("user{n}@example.com"), &account(n))
            .unwrap();
    }
    // The gauge reports each threshold once.
    let gauge = s.map_gauge();
    let (usage, first) = gauge.observe().unwrap();
    let (_, second) = gauge.observe().unwrap();
    assert_eq!(first, usage.warning_level());
    assert_eq!(second, None);
}

#[test]
fn list_after_reads_bounded_chunks_in_order() {
    let dir = TempDir::new("quota-chunks");
    let s = open_small(&dir, 64 << 20);
    let quota = no_reserve(1000, u64::MAX);
    for _ in 0..10 {
        push(&s, ME, 100, &quota);
    }
    let o = s.offline();
    let chunk = o.list_after(ME, 0, 4, usize::MAX).unwrap();
    assert_eq!(
        chunk.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let chunk = o.list_after(ME, 4, 100, 250).unwrap();
    // Bounded by bytes: two records of ~130 bytes, at least one whatever the bound.
    assert_eq!(chunk.iter().map(|m| m.seq).collect::<Vec<_>>(), [5]);
    assert_eq!(o.list_after(ME, 9, 100, 1).unwrap().len(), 1);
    assert!(o.list_after(ME, 10, 100, 1).unwrap().is_empty());
    assert!(o.list_after(OTHER, 0, 100, 1).unwrap().is_empty());
}

#[test]
fn format_1_counters_get_their_byte_total_from_the_messages() {
    let dir = TempDir::new("quota-v1");
    let s = open_small(&dir, 64 << 20);
    let quota = no_reserve(1000, u64::MAX);
    for _ in 0..3 {
        push(&s, ME, 500, &quota);
    }
    let bytes = s.offline().bytes(ME).unwrap();
    // Rewrite the counters as an older build stored them: `u8 1 | u64 count | u64 next_seq`.
    let v1 = [&[1u8][..], &3u64.to_le_bytes(), &4u64.to_le_bytes()].concat();
    s.write_sync(move |t| t.put(Table::OfflineMeta, ME.as_bytes(), &v1))
        .unwrap();
    assert_eq!(s.offline().count(ME).unwrap(), 3);
    assert_eq!(s.offline().bytes(ME).unwrap(), bytes);
    // The quota holds against the computed total, and the next write stores it.
    assert_eq!(
        push(&s, ME, 500, &no_reserve(1000, bytes + 10)),
        OfflinePush::Full(OfflineFull::Bytes)
    );
    assert!(matches!(push(&s, ME, 500, &quota), OfflinePush::Stored(4)));
    assert_eq!(s.offline().bytes(ME).unwrap(), bytes / 3 * 4);
    let raw = common::raw(&s, Table::OfflineMeta, ME.as_bytes()).unwrap();
    assert_eq!(raw[0], 2);
    // A lying format-2 counter is refused, never trusted.
    let lying = [
        &[2u8][..],
        &0u64.to_le_bytes(),
        &5u64.to_le_bytes(),
        &9u64.to_le_bytes(),
    ]
    .concat();
    s.write_sync(move |t| t.put(Table::OfflineMeta, ME.as_bytes(), &lying))
        .unwrap();
    assert!(matches!(
        s.offline().bytes(ME),
        Err(StorageError::Corrupt(_))
    ));
}
