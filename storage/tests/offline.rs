//! OfflineStore, the offline methods of WriteTxn, and VcardStore on a real environment.

mod common;

use common::{check_stored_record, users, write, TempDir};
use xmppd_storage::{OfflineMessage, StorageError, Table};

const ME: &str = "juliet@example.com";

/// The environment, with accounts for every user the tests write for.
fn open(dir: &TempDir) -> xmppd_storage::Storage {
    let s = common::open(dir);
    users(&s, &[ME, "juliet@example.com.evil", "romeo@example.net"]);
    s
}

fn push(s: &xmppd_storage::Storage, user: &str, stamp: u64, body: &str, max: usize) -> Option<u64> {
    let (user, body) = (user.to_owned(), body.to_owned());
    write(s, move |t| {
        t.push_offline(
            &user,
            stamp,
            "romeo@example.net/orchard",
            body.as_bytes(),
            max,
        )
    })
}

fn bodies(s: &xmppd_storage::Storage, user: &str) -> Vec<(u64, String)> {
    s.offline()
        .list(user)
        .unwrap()
        .into_iter()
        .map(|m| (m.seq, String::from_utf8(m.stanza).unwrap()))
        .collect()
}

#[test]
fn messages_come_out_in_push_order() {
    let dir = TempDir::new("offline-order");
    let s = open(&dir);
    assert!(s.offline().list(ME).unwrap().is_empty());
    assert_eq!(s.offline().count(ME).unwrap(), 0);

    // More than 256 messages, so big-endian keys are what keeps the order.
    let seqs: Vec<u64> = (0..300)
        .map(|i| push(&s, ME, 1000 + i, &format!("m{i}"), 1000).unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let list = s.offline().list(ME).unwrap();
    assert_eq!(list.len(), 300);
    assert_eq!(s.offline().count(ME).unwrap(), 300);
    for (i, m) in list.iter().enumerate() {
        assert_eq!(
            *m,
            OfflineMessage {
                seq: seqs[i],
                stamp_unix_ms: 1000 + i as u64,
                from: "romeo@example.net/orchard".into(),
                stanza: format!("m{i}").into_bytes(),
            }
        );
    }
    // Another user's queue (whose JID extends this one's) is separate.
    push(&s, "juliet@example.com.evil", 1, "x", 10).unwrap();
    assert_eq!(s.offline().count(ME).unwrap(), 300);
    assert_eq!(s.offline().list(ME).unwrap().len(), 300);
}

#[test]
fn a_full_queue_refuses_and_stores_nothing() {
    let dir = TempDir::new("offline-quota");
    let s = open(&dir);
    for i in 0..3 {
        assert!(push(&s, ME, i, &format!("m{i}"), 3).is_some());
    }
    assert_eq!(push(&s, ME, 9, "over", 3), None);
    assert_eq!(push(&s, ME, 9, "over", 0), None);
    assert_eq!(s.offline().count(ME).unwrap(), 3);
    assert_eq!(
        bodies(&s, ME)
            .into_iter()
            .map(|(_, b)| b)
            .collect::<Vec<_>>(),
        ["m0", "m1", "m2"]
    );
    // A larger quota lets it through; the refused pushes used no sequence number.
    assert_eq!(push(&s, ME, 9, "m3", 4), Some(bodies(&s, ME)[2].0 + 1));
    assert_eq!(s.offline().count(ME).unwrap(), 4);
    // Other users have their own quota.
    assert!(push(&s, "romeo@example.net", 1, "x", 1).is_some());
}

#[test]
fn delete_counts_what_existed_and_sequence_numbers_never_repeat() {
    let dir = TempDir::new("offline-delete");
    let last_before_reopen;
    {
        let s = open(&dir);
        let seqs: Vec<u64> = (0..5)
            .map(|i| push(&s, ME, i, &format!("m{i}"), 10).unwrap())
            .collect();
        let some = [seqs[0], seqs[2], seqs[2], 999_999];
        let deleted = write(&s, move |t| t.delete_offline(ME, &some));
        assert_eq!(deleted, 2);
        assert_eq!(s.offline().count(ME).unwrap(), 3);
        assert_eq!(
            bodies(&s, ME),
            [
                (seqs[1], "m1".into()),
                (seqs[3], "m3".into()),
                (seqs[4], "m4".into())
            ]
        );
        // Emptying the queue keeps the next sequence number.
        let all = seqs.clone();
        let deleted = write(&s, move |t| t.delete_offline(ME, &all));
        assert_eq!(deleted, 3);
        assert_eq!(s.offline().count(ME).unwrap(), 0);
        assert_eq!(write(&s, |t| t.delete_offline(ME, &[])), 0);
        let next = push(&s, ME, 5, "m5", 10).unwrap();
        assert!(next > seqs[4], "{next} after {}", seqs[4]);
        last_before_reopen = next;
    }
    let s = open(&dir);
    assert_eq!(bodies(&s, ME), [(last_before_reopen, "m5".into())]);
    let after = push(&s, ME, 6, "m6", 10).unwrap();
    assert!(after > last_before_reopen);
    assert_eq!(s.offline().count(ME).unwrap(), 2);
    assert_eq!(
        bodies(&s, ME),
        [(last_before_reopen, "m5".into()), (after, "m6".into())]
    );
}

#[test]
fn a_failed_write_rolls_back_the_push_and_its_counter() {
    let dir = TempDir::new("offline-rollback");
    let s = open(&dir);
    let first = push(&s, ME, 1, "kept", 10).unwrap();
    let failed = s
        .submit(|t| {
            t.push_offline(ME, 2, "a@b", b"lost", 10)?;
            Err::<(), _>(StorageError::NotFound)
        })
        .wait();
    assert!(matches!(failed, Err(StorageError::NotFound)));
    assert_eq!(s.offline().count(ME).unwrap(), 1);
    assert_eq!(push(&s, ME, 3, "next", 10), Some(first + 1));
}

#[test]
fn damaged_offline_records_are_corrupt_never_a_panic() {
    let dir = TempDir::new("offline-corrupt");
    let s = open(&dir);
    let seq = push(&s, ME, 7, "<message/>", 10).unwrap();
    let mut key = format!("{ME}\0").into_bytes();
    key.extend_from_slice(&seq.to_be_bytes());
    let o = s.offline();
    check_stored_record(&s, Table::Offline, &key, || o.list(ME));
    check_stored_record(&s, Table::OfflineMeta, ME.as_bytes(), || o.count(ME));
    // A counter that disagrees with itself is refused rather than trusted.
    let lying = [&[1u8][..], &5u64.to_le_bytes(), &2u64.to_le_bytes()].concat();
    s.write_sync(move |t| t.put(Table::OfflineMeta, ME.as_bytes(), &lying))
        .unwrap();
    assert!(matches!(o.count(ME), Err(StorageError::Corrupt(_))));
    let pushed = s.submit(|t| t.push_offline(ME, 8, "a@b", b"x", 10)).wait();
    assert!(matches!(pushed, Err(StorageError::Corrupt(_))));
}

#[test]
fn vcard_put_get_replace_delete() {
    let dir = TempDir::new("vcard");
    let s = open(&dir);
    let v = s.vcards();
    assert_eq!(v.get(ME).unwrap(), None);
    write(&s, |t| t.put_vcard(ME, b"<vCard><FN>Juliet</FN></vCard>"));
    write(&s, |t| t.put_vcard("romeo@example.net", b"<vCard/>"));
    assert_eq!(
        v.get(ME).unwrap().as_deref(),
        Some(&b"<vCard><FN>Juliet</FN></vCard>"[..])
    );
    write(&s, |t| t.put_vcard(ME, b""));
    assert_eq!(v.get(ME).unwrap(), Some(Vec::new()));
    write(&s, |t| t.put_vcard(ME, b"<vCard><FN>J.</FN></vCard>"));
    assert_eq!(
        v.get(ME).unwrap().as_deref(),
        Some(&b"<vCard><FN>J.</FN></vCard>"[..])
    );
    let (existed, again) = write(&s, |t| Ok((t.delete_vcard(ME)?, t.delete_vcard(ME)?)));
    assert_eq!((existed, again), (true, false));
    assert_eq!(v.get(ME).unwrap(), None);
    assert_eq!(
        v.get("romeo@example.net").unwrap().as_deref(),
        Some(&b"<vCard/>"[..])
    );
    assert!(matches!(v.get("a\0b"), Err(StorageError::InvalidKey(_))));

    check_stored_record(&s, Table::Vcards, b"romeo@example.net", || {
        v.get("romeo@example.net")
    });
}
