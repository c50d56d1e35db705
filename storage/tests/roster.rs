//! RosterStore and the roster methods of WriteTxn on a real environment.

mod common;

use common::{check_stored_record, item, users, write, TempDir};
use xmppd_storage::{Roster, RosterItem, StorageError, Subscription, Table};

const ME: &str = "juliet@example.com";

/// The environment, with accounts for every user the tests write for.
fn open(dir: &TempDir) -> xmppd_storage::Storage {
    let s = common::open(dir);
    users(&s, &[ME, "al@x", "al@x.org", "ak@x", "nurse@example.com"]);
    for i in 0..8 {
        users(&s, &[&format!("u{i}@example.com")]);
    }
    s
}

fn full_item(jid: &str) -> RosterItem {
    RosterItem {
        jid: jid.to_owned(),
        name: Some("Romeo".into()),
        groups: vec!["Friends".into(), "Lovers".into()],
        subscription: Subscription::Both,
        ask: true,
        approved: true,
    }
}

#[test]
fn put_get_replace_delete_len() {
    let dir = TempDir::new("roster-crud");
    let s = open(&dir);
    let r = s.rosters();
    assert_eq!(r.item(ME, "romeo@example.net").unwrap(), None);
    assert_eq!(r.load(ME).unwrap(), Roster::default());

    let romeo = full_item("romeo@example.net");
    let stored = romeo.clone();
    write(&s, move |t| t.put_roster_item(ME, &stored));
    assert_eq!(
        r.item(ME, "romeo@example.net").unwrap(),
        Some(romeo.clone())
    );

    let changed = RosterItem {
        name: None,
        groups: Vec::new(),
        subscription: Subscription::To,
        ask: false,
        ..romeo
    };
    let stored = changed.clone();
    let len = write(&s, move |t| {
        t.put_roster_item(ME, &stored)?;
        t.put_roster_item(ME, &item("nurse@example.com"))?;
        t.roster_len(ME)
    });
    assert_eq!(len, 2);
    assert_eq!(r.item(ME, "romeo@example.net").unwrap(), Some(changed));

    let (existed, again, len) = write(&s, |t| {
        Ok((
            t.delete_roster_item(ME, "romeo@example.net")?,
            t.delete_roster_item(ME, "romeo@example.net")?,
            t.roster_len(ME)?,
        ))
    });
    assert_eq!((existed, again, len), (true, false, 1));
    assert_eq!(r.item(ME, "romeo@example.net").unwrap(), None);
    assert_eq!(r.load(ME).unwrap().items, [item("nurse@example.com")]);
}

#[test]
fn items_come_out_sorted_and_users_stay_apart() {
    let dir = TempDir::new("roster-order");
    let s = open(&dir);
    // "al@x" is a prefix of "al@x.org": the NUL separator keeps their rosters apart.
    let contacts = [
        "zed@b.example",
        "amy@b.example",
        "amy@a.example",
        "bob@a.example",
    ];
    write(&s, move |t| {
        for c in contacts {
            t.put_roster_item("al@x", &item(c))?;
        }
        t.put_roster_item("al@x.org", &item("other@a.example"))?;
        t.put_roster_item("ak@x", &item("before@a.example"))
    });
    let want: Vec<_> = [
        "amy@a.example",
        "amy@b.example",
        "bob@a.example",
        "zed@b.example",
    ]
    .into_iter()
    .map(item)
    .collect();
    assert_eq!(s.rosters().load("al@x").unwrap().items, want);
    let (listed, len) = write(&s, |t| Ok((t.roster_items("al@x")?, t.roster_len("al@x")?)));
    assert_eq!((listed, len), (want, 4));
    assert_eq!(
        s.rosters().load("al@x.org").unwrap().items,
        [item("other@a.example")]
    );
    assert_eq!(write(&s, |t| t.roster_len("al@x.or")), 0);
}

#[test]
fn version_starts_random_in_the_upper_half_and_increments() {
    let dir = TempDir::new("roster-version");
    let s = open(&dir);
    let r = s.rosters();
    assert_eq!(r.version(ME).unwrap(), 0);
    assert_eq!(write(&s, |t| t.roster_version(ME)), 0);

    let first = write(&s, |t| t.bump_roster_version(ME));
    assert!(first >= 1 << 63, "{first:#x}");
    assert_eq!(r.version(ME).unwrap(), first);
    let (second, third, seen) = write(&s, |t| {
        Ok((
            t.bump_roster_version(ME)?,
            t.bump_roster_version(ME)?,
            t.roster_version(ME)?,
        ))
    });
    assert_eq!((second, third, seen), (first + 1, first + 2, first + 2));
    assert_eq!(r.load(ME).unwrap().version, first + 2);

    // Every user starts at their own random point.
    let starts: Vec<u64> = (0..8)
        .map(|i| {
            write(&s, move |t| {
                t.bump_roster_version(&format!("u{i}@example.com"))
            })
        })
        .collect();
    assert!(starts.iter().all(|&v| v >= 1 << 63));
    let mut distinct = starts.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), starts.len(), "{starts:x?}");
}

#[test]
fn subscription_requests() {
    let dir = TempDir::new("roster-subreq");
    let s = open(&dir);
    let stanza = b"<presence from='romeo@example.net' type='subscribe'/>".to_vec();
    let st = stanza.clone();
    let (before, count) = write(&s, move |t| {
        let before = t.sub_request(ME, "romeo@example.net")?;
        t.put_sub_request(ME, "romeo@example.net", &st)?;
        t.put_sub_request(ME, "benvolio@example.net", b"<presence type='subscribe'/>")?;
        t.put_sub_request("nurse@example.com", "romeo@example.net", b"other")?;
        Ok((before, t.sub_request_count(ME)?))
    });
    assert_eq!((before, count), (None, 2));
    assert_eq!(
        write(&s, |t| t.sub_request(ME, "romeo@example.net")),
        Some(stanza.clone())
    );
    assert_eq!(
        s.rosters().load(ME).unwrap().pending_in,
        [
            (
                "benvolio@example.net".to_owned(),
                b"<presence type='subscribe'/>".to_vec()
            ),
            ("romeo@example.net".to_owned(), stanza),
        ]
    );

    // A repeated request replaces the stored stanza.
    write(&s, |t| t.put_sub_request(ME, "romeo@example.net", b"again"));
    let (existed, again, count) = write(&s, |t| {
        let stored = t.sub_request(ME, "romeo@example.net")?;
        assert_eq!(stored.as_deref(), Some(&b"again"[..]));
        Ok((
            t.delete_sub_request(ME, "benvolio@example.net")?,
            t.delete_sub_request(ME, "benvolio@example.net")?,
            t.sub_request_count(ME)?,
        ))
    });
    assert_eq!((existed, again, count), (true, false, 1));
    assert_eq!(
        s.rosters().load("nurse@example.com").unwrap().pending_in,
        [("romeo@example.net".to_owned(), b"other".to_vec())]
    );
}

#[test]
fn a_failed_write_leaves_the_roster_unchanged() {
    let dir = TempDir::new("roster-rollback");
    let s = open(&dir);
    write(&s, |t| t.put_roster_item(ME, &item("romeo@example.net")));
    let version = write(&s, |t| t.bump_roster_version(ME));
    let failed = s
        .submit(|t| {
            t.put_roster_item(ME, &full_item("romeo@example.net"))?;
            t.bump_roster_version(ME)?;
            t.put_sub_request(ME, "tybalt@example.net", b"x")?;
            Err::<(), _>(StorageError::NotFound)
        })
        .wait();
    assert!(matches!(failed, Err(StorageError::NotFound)));
    let roster = s.rosters().load(ME).unwrap();
    assert_eq!(roster.items, [item("romeo@example.net")]);
    assert_eq!(roster.version, version);
    assert!(roster.pending_in.is_empty());
}

#[test]
fn jids_that_cannot_be_keys_are_refused() {
    let dir = TempDir::new("roster-badkey");
    let s = open(&dir);
    for (user, contact) in [
        ("a\0b@x", "c@x"),
        ("a@x", "c\0@x"),
        ("", "c@x"),
        ("a@x", ""),
    ] {
        let (u, c) = (user.to_owned(), contact.to_owned());
        let result = s.submit(move |t| t.put_roster_item(&u, &item(&c))).wait();
        assert!(
            matches!(result, Err(StorageError::InvalidKey(_))),
            "{user:?}/{contact:?}: {result:?}"
        );
        assert!(matches!(
            s.rosters().item(user, contact),
            Err(StorageError::InvalidKey(_))
        ));
    }
    assert!(matches!(
        s.rosters().load("a\0b"),
        Err(StorageError::InvalidKey(_))
    ));
}

#[test]
fn damaged_records_are_corrupt_never_a_panic() {
    let dir = TempDir::new("roster-corrupt");
    let s = open(&dir);
    write(&s, |t| {
        t.put_roster_item(ME, &full_item("romeo@example.net"))?;
        t.bump_roster_version(ME)?;
        t.put_sub_request(ME, "romeo@example.net", b"<presence type='subscribe'/>")
    });
    let key = format!("{ME}\0romeo@example.net").into_bytes();
    let r = s.rosters();
    check_stored_record(&s, Table::Roster, &key, || r.item(ME, "romeo@example.net"));
    check_stored_record(&s, Table::Roster, &key, || r.load(ME));
    check_stored_record(&s, Table::RosterVersion, ME.as_bytes(), || r.version(ME));
    check_stored_record(&s, Table::SubRequests, &key, || r.load(ME));
    // A key that is not `user \0 contact` is reported too.
    s.write_sync(|t| t.put(Table::Roster, format!("{ME}\0\u{0}x").as_bytes(), b""))
        .unwrap();
    assert!(matches!(r.load(ME), Err(StorageError::Corrupt(_))));
}
