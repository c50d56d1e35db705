//! AccountStore, schema versioning and record decoding on a real environment.

mod common;

use common::{account, item, open, opts, write, TempDir};
use xmppd_storage::{
    Account, PubsubItem, RevokeReason, Storage, StorageError, Table, SCHEMA_VERSION,
};

#[test]
fn create_get_exists_set_delete() {
    let dir = TempDir::new("crud");
    let s = open(&dir);
    let accounts = s.accounts();
    assert_eq!(accounts.get("alice@example.org").unwrap(), None);
    assert!(!accounts.exists("alice@example.org").unwrap());

    accounts.create("alice@example.org", &account(1)).unwrap();
    assert_eq!(accounts.get("alice@example.org").unwrap(), Some(account(1)));
    assert!(accounts.exists("alice@example.org").unwrap());
    assert!(matches!(
        accounts.create("alice@example.org", &account(2)),
        Err(StorageError::AlreadyExists)
    ));
    assert_eq!(accounts.get("alice@example.org").unwrap(), Some(account(1)));

    let changed = xmppd_storage::Account {
        disabled: true,
        ..account(3)
    };
    accounts.set("alice@example.org", &changed).unwrap();
    assert_eq!(accounts.get("alice@example.org").unwrap(), Some(changed));
    assert!(matches!(
        accounts.set("bob@example.org", &account(4)),
        Err(StorageError::NotFound)
    ));
    assert!(!accounts.exists("bob@example.org").unwrap());

    accounts.delete("alice@example.org").unwrap();
    assert!(!accounts.exists("alice@example.org").unwrap());
    assert!(matches!(
        accounts.delete("alice@example.org"),
        Err(StorageError::NotFound)
    ));
}

#[test]
fn async_variants_report_their_own_errors() {
    let dir = TempDir::new("async");
    let s = open(&dir);
    let a = s.accounts();
    a.create_async("carol@example.org", account(1))
        .wait()
        .unwrap();
    assert!(matches!(
        a.create_async("carol@example.org", account(2)).wait(),
        Err(StorageError::AlreadyExists)
    ));
    a.set_async("carol@example.org", account(5)).wait().unwrap();
    assert_eq!(a.get("carol@example.org").unwrap(), Some(account(5)));
    assert!(matches!(
        a.set_async("nobody@example.org", account(1)).wait(),
        Err(StorageError::NotFound)
    ));
    a.delete_async("carol@example.org").wait().unwrap();
    assert!(matches!(
        a.delete_async("carol@example.org").wait(),
        Err(StorageError::NotFound)
    ));
    assert!(!a.exists("carol@example.org").unwrap());
}

#[test]
fn list_is_sorted_and_list_domain_filters() {
    let dir = TempDir::new("list");
    let s = open(&dir);
    let a = s.accounts();
    for (i, jid) in [
        "zed@a.example",
        "amy@b.example",
        "bob@a.example",
        "amy@a.example",
        "x@a.example.net",
    ]
    .into_iter()
    .enumerate()
    {
        a.create(jid, &account(i as u64)).unwrap();
    }
    assert_eq!(
        a.list().unwrap(),
        [
            "amy@a.example",
            "amy@b.example",
            "bob@a.example",
            "x@a.example.net",
            "zed@a.example"
        ]
    );
    assert_eq!(
        a.list_domain("a.example").unwrap(),
        ["amy@a.example", "bob@a.example", "zed@a.example"]
    );
    assert_eq!(a.list_domain("b.example").unwrap(), ["amy@b.example"]);
    assert!(a.list_domain("example").unwrap().is_empty());
}

#[test]
fn data_survives_reopen() {
    let dir = TempDir::new("reopen");
    {
        let s = open(&dir);
        s.accounts()
            .create("dave@example.org", &account(7))
            .unwrap();
        s.accounts()
            .set_async("dave@example.org", account(8))
            .wait()
            .unwrap();
    }
    let s = open(&dir);
    assert_eq!(
        s.accounts().get("dave@example.org").unwrap(),
        Some(account(8))
    );
}

#[test]
fn corrupt_records_are_reported_not_panicked_on() {
    let dir = TempDir::new("corrupt");
    let s = open(&dir);
    let good = {
        s.accounts().create("ok@example.org", &account(1)).unwrap();
        s.write_sync(|t| Ok(t.get(Table::Accounts, b"ok@example.org")?.unwrap().to_vec()))
            .unwrap()
    };
    let truncated = good[..good.len() - 3].to_vec();
    s.write_sync(move |t| {
        t.put(
            Table::Accounts,
            b"garbage@example.org",
            b"\x01\xff\xff\xff\xff\x00",
        )?;
        t.put(Table::Accounts, b"short@example.org", &truncated)?;
        t.put(Table::Accounts, b"empty@example.org", b"")
    })
    .unwrap();
    for jid in [
        "garbage@example.org",
        "short@example.org",
        "empty@example.org",
    ] {
        match s.accounts().get(jid) {
            Err(StorageError::Corrupt(msg)) => assert!(msg.contains("account"), "{msg}"),
            other => panic!("{jid}: {other:?}"),
        }
        // The key is still there: exists and list do not decode values.
        assert!(s.accounts().exists(jid).unwrap());
    }
    assert_eq!(
        s.accounts().get("ok@example.org").unwrap(),
        Some(account(1))
    );
}

#[test]
fn schema_version_is_recorded() {
    let dir = TempDir::new("schema");
    let s = open(&dir);
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let raw = s
        .write_sync(|t| Ok(t.get(Table::Meta, b"schema_version")?.map(<[u8]>::to_vec)))
        .unwrap();
    assert_eq!(raw, Some(SCHEMA_VERSION.to_le_bytes().to_vec()));
}

/// Gives `user` something in every per-user table, naming `other` as a contact.
fn fill_user(s: &Storage, user: &'static str, other: &'static str) {
    write(s, move |t| {
        t.put_roster_item(user, &item(other))?;
        t.put_roster_item(user, &item("third@example.org"))?;
        t.bump_roster_version(user)?;
        t.put_sub_request(user, other, b"<presence type='subscribe'/>")?;
        t.push_offline(user, 1, other, b"<message/>", 10)?;
        t.push_offline(user, 2, other, b"<message/>", 10)?;
        t.create_pubsub_node(user, "urn:xmpp:avatar:data", b"cfg")?;
        t.create_pubsub_node(user, "urn:xmpp:mood", b"cfg")?;
        for id in ["a", "b"] {
            let item = PubsubItem {
                id: id.into(),
                publisher: user.into(),
                published_at: 1,
                payload: b"<data/>".to_vec(),
            };
            t.publish_pubsub_item(user, "urn:xmpp:avatar:data", &item, 10)?;
        }
        t.put_private(user, "storage:bookmarks", b"<storage/>")?;
        t.put_private(user, "exodus:prefs", b"<exodus/>")?;
        t.put_vcard(user, b"<vCard/>")
    });
}

/// Every key of every table, so a test can see exactly what a deletion left behind.
fn all_keys(s: &Storage) -> Vec<(Table, Vec<u8>)> {
    s.write_sync(|t| {
        let mut out = Vec::new();
        for &table in Table::ALL {
            for entry in t.entries(table, b"")? {
                out.push((table, entry?.0.to_vec()));
            }
        }
        Ok(out)
    })
    .unwrap()
}

#[test]
fn deleting_an_account_deletes_its_user_data_and_nothing_else() {
    let dir = TempDir::new("cascade");
    let s = open(&dir);
    let a = s.accounts();
    // "bob@example.org" is a prefix of "bob@example.org.uk": their data must stay apart.
    for (n, (user, other)) in [
        ("alice@example.org", "bob@example.org"),
        ("bob@example.org", "alice@example.org"),
        ("bob@example.org.uk", "alice@example.org"),
        ("carol@example.org", "alice@example.org"),
    ]
    .into_iter()
    .enumerate()
    {
        a.create(user, &account(n as u64)).unwrap();
        fill_user(&s, user, other);
    }
    let survivors = |keys: Vec<(Table, Vec<u8>)>, gone: &[&str]| -> Vec<(Table, Vec<u8>)> {
        keys.into_iter()
            .filter(|(table, key)| {
                !gone.iter().any(|user| {
                    let mut prefix = user.as_bytes().to_vec();
                    prefix.push(0);
                    *table != Table::Meta
                        && *table != Table::Revocations
                        && (key == user.as_bytes() || key.starts_with(&prefix))
                })
            })
            .collect()
    };
    let before = all_keys(&s);
    let not_revocations = |keys: Vec<(Table, Vec<u8>)>| -> Vec<(Table, Vec<u8>)> {
        keys.into_iter()
            .filter(|(table, key)| {
                *table != Table::Revocations && !(*table == Table::Meta && key == b"revocation_seq")
            })
            .collect()
    };

    a.delete("alice@example.org").unwrap();
    let after = all_keys(&s);
    assert_eq!(
        not_revocations(after.clone()),
        survivors(before.clone(), &["alice@example.org"])
    );
    assert!(after.len() < before.len());
    let alice = s.rosters().load("alice@example.org").unwrap();
    assert_eq!(alice, xmppd_storage::Roster::default());
    assert!(s.offline().list("alice@example.org").unwrap().is_empty());
    assert_eq!(s.offline().count("alice@example.org").unwrap(), 0);
    assert_eq!(s.vcards().get("alice@example.org").unwrap(), None);
    assert_eq!(s.pubsub().node_count("alice@example.org").unwrap(), 0);
    assert_eq!(
        s.pubsub()
            .items("alice@example.org", "urn:xmpp:avatar:data", None)
            .unwrap(),
        []
    );
    assert_eq!(s.private().count("alice@example.org").unwrap(), 0);
    // Bob's roster still names Alice.
    assert_eq!(
        s.rosters()
            .item("bob@example.org", "alice@example.org")
            .unwrap(),
        Some(item("alice@example.org"))
    );

    a.delete_async("bob@example.org").wait().unwrap();
    assert_eq!(
        not_revocations(all_keys(&s)),
        survivors(before, &["alice@example.org", "bob@example.org"])
    );
    let revoked = a.revocations_after(0).unwrap();
    assert!(revoked.complete);
    assert_eq!(
        revoked
            .entries
            .iter()
            .map(|r| (r.jid.as_str(), r.reason))
            .collect::<Vec<_>>(),
        [
            ("alice@example.org", RevokeReason::Deleted),
            ("bob@example.org", RevokeReason::Deleted)
        ]
    );

    // issue 8: a write racing the deletion recreates nothing.
    let quiet = all_keys(&s);
    let racing = s
        .submit(|t| {
            t.put_roster_item("alice@example.org", &item("bob@example.org"))?;
            t.put_vcard("alice@example.org", b"<vCard/>")
        })
        .wait();
    assert!(
        matches!(racing, Err(StorageError::NoSuchAccount)),
        "{racing:?}"
    );
    for write_one in [
        |t: &mut xmppd_storage::WriteTxn<'_>| t.bump_roster_version("alice@example.org").map(drop),
        |t: &mut xmppd_storage::WriteTxn<'_>| {
            t.put_sub_request("alice@example.org", "bob@example.org", b"<presence/>")
        },
        |t: &mut xmppd_storage::WriteTxn<'_>| {
            t.push_offline("alice@example.org", 1, "x@y", b"m", 10)
                .map(drop)
        },
        |t: &mut xmppd_storage::WriteTxn<'_>| {
            t.create_pubsub_node("alice@example.org", "urn:xmpp:mood", b"")
                .map(drop)
        },
        |t: &mut xmppd_storage::WriteTxn<'_>| {
            t.put_private("alice@example.org", "storage:bookmarks", b"<storage/>")
        },
    ] {
        let r = s.submit(write_one).wait();
        assert!(matches!(r, Err(StorageError::NoSuchAccount)), "{r:?}");
    }
    // The node went with the account: a racing publish finds none and writes nothing.
    let item = PubsubItem {
        id: "c".into(),
        publisher: "alice@example.org".into(),
        published_at: 2,
        payload: Vec::new(),
    };
    assert_eq!(
        write(&s, move |t| t.publish_pubsub_item(
            "alice@example.org",
            "urn:xmpp:avatar:data",
            &item,
            10
        )),
        None
    );
    assert_eq!(all_keys(&s), quiet);
    let uk = s.rosters().load("bob@example.org.uk").unwrap();
    assert_eq!(uk.items.len(), 2);
    assert_ne!(uk.version, 0);
    assert_eq!(uk.pending_in.len(), 1);
    assert_eq!(s.offline().count("bob@example.org.uk").unwrap(), 2);
    assert!(s.vcards().get("bob@example.org.uk").unwrap().is_some());
    assert_eq!(s.pubsub().node_count("bob@example.org.uk").unwrap(), 2);
    assert_eq!(
        s.pubsub()
            .items("bob@example.org.uk", "urn:xmpp:avatar:data", None)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(s.private().count("bob@example.org.uk").unwrap(), 2);

    // A failed delete cascades nothing.
    assert!(matches!(
        a.delete("alice@example.org"),
        Err(StorageError::NotFound)
    ));
    // A re-created account starts empty, with a fresh random roster version.
    a.create("alice@example.org", &account(9)).unwrap();
    assert_eq!(
        s.rosters().load("alice@example.org").unwrap(),
        xmppd_storage::Roster::default()
    );
    assert_eq!(
        write(&s, |t| t.push_offline(
            "alice@example.org",
            1,
            "x@y",
            b"m",
            10
        )),
        Some(1)
    );
}

/// Account record format 1, written out by hand as a version 1 build stored it.
fn v1_account_record(a: &Account) -> Vec<u8> {
    let mut out = vec![1u8];
    for keys in [&a.sha1, &a.sha256] {
        for (i, field) in [&keys.salt, &keys.stored_key, &keys.server_key]
            .into_iter()
            .enumerate()
        {
            out.extend_from_slice(&(field.len() as u32).to_le_bytes());
            out.extend_from_slice(field);
            if i == 0 {
                out.extend_from_slice(&keys.iterations.to_le_bytes());
            }
        }
    }
    out.extend_from_slice(&a.created_unix.to_le_bytes());
    out.push(u8::from(a.disabled));
    out
}

/// An environment exactly as schema version 1 left it: only the `meta` and `accounts`
/// tables, version 1 recorded, one account.
fn write_v1_environment(dir: &std::path::Path) {
    use lmdb::{DatabaseFlags, Environment, Transaction, WriteFlags};
    std::fs::create_dir_all(dir).unwrap();
    let env = Environment::new()
        .set_max_dbs(2)
        .set_map_size(opts().map_size)
        .open(dir)
        .unwrap();
    let meta = env.create_db(Some("meta"), DatabaseFlags::empty()).unwrap();
    let accounts = env
        .create_db(Some("accounts"), DatabaseFlags::empty())
        .unwrap();
    let mut txn = env.begin_rw_txn().unwrap();
    txn.put(
        meta,
        b"schema_version",
        &1u32.to_le_bytes(),
        WriteFlags::empty(),
    )
    .unwrap();
    txn.put(
        accounts,
        b"old@example.org",
        &v1_account_record(&account(42)),
        WriteFlags::empty(),
    )
    .unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_version_1_environment_is_migrated_on_open() {
    let dir = TempDir::new("migrate-v1");
    let data = dir.path().join("data");
    write_v1_environment(&data);

    // A read-only handle cannot migrate, and says so.
    match Storage::open_readonly(&data, &opts()) {
        Err(StorageError::NeedsMigration { found, supported }) => {
            assert_eq!((found, supported), (1, SCHEMA_VERSION));
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("read-only open accepted a version 1 environment"),
    }

    {
        let s = Storage::open(&data, &opts()).unwrap();
        assert_eq!(SCHEMA_VERSION, 6);
        assert_eq!(s.schema_version().unwrap(), 6);
        assert_eq!(
            s.accounts().get("old@example.org").unwrap(),
            Some(account(42))
        );
        // The new tables exist and start empty.
        assert_eq!(
            s.rosters().load("old@example.org").unwrap(),
            xmppd_storage::Roster::default()
        );
        assert_eq!(
            s.privacy().load("old@example.org").unwrap(),
            xmppd_storage::Privacy::default()
        );
        assert_eq!(s.muc().count("conference.example.org").unwrap(), 0);
        assert_eq!(s.pubsub().node_count("old@example.org").unwrap(), 0);
        assert_eq!(s.private().count("old@example.org").unwrap(), 0);
        write(&s, |t| {
            t.create_pubsub_node("old@example.org", "urn:xmpp:mood", b"cfg")?;
            t.put_private("old@example.org", "storage:bookmarks", b"<storage/>")?;
            t.put_privacy_list(
                "old@example.org",
                &xmppd_storage::PrivacyList {
                    name: "l".into(),
                    items: vec![],
                },
            )?;
            t.set_privacy_default("old@example.org", Some("l"))?;
            t.put_roster_item("old@example.org", &item("new@example.org"))?;
            t.bump_roster_version("old@example.org")?;
            t.push_offline("old@example.org", 1, "new@example.org", b"<message/>", 10)?;
            t.put_vcard("old@example.org", b"<vCard/>")?;
            t.put_muc_room(
                "conference.example.org",
                "room",
                &xmppd_storage::MucRoom::default(),
            )
        });
    }

    // Reopened (read-write, then read-only) it is a plain current-version environment.
    type Open = fn(&std::path::Path, &xmppd_storage::Options) -> Result<Storage, StorageError>;
    for open in [Storage::open as Open, Storage::open_readonly] {
        let s = open(&data, &opts()).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(
            s.privacy()
                .load("old@example.org")
                .unwrap()
                .default
                .as_deref(),
            Some("l")
        );
        assert_eq!(
            s.rosters().load("old@example.org").unwrap().items,
            [item("new@example.org")]
        );
        assert_eq!(s.offline().count("old@example.org").unwrap(), 1);
        assert!(s.vcards().get("old@example.org").unwrap().is_some());
        assert_eq!(
            s.muc()
                .room_names("conference.example.org", None, 10)
                .unwrap(),
            ["room"]
        );
        assert_eq!(
            s.pubsub().node_names("old@example.org", None, 10).unwrap(),
            ["urn:xmpp:mood"]
        );
        assert_eq!(s.private().count("old@example.org").unwrap(), 1);
        assert!(s.accounts().exists("old@example.org").unwrap());
    }
}

#[test]
fn newer_schema_is_refused() {
    let dir = TempDir::new("too-new");
    let data = dir.path().join("data");
    {
        let s = Storage::open(&data, &opts()).unwrap();
        s.accounts().create("eve@example.org", &account(1)).unwrap();
        s.write_sync(|t| {
            t.put(
                Table::Meta,
                b"schema_version",
                &(SCHEMA_VERSION + 1).to_le_bytes(),
            )
        })
        .unwrap();
    }
    for result in [
        Storage::open(&data, &opts()),
        Storage::open_readonly(&data, &opts()),
    ] {
        match result {
            Err(e @ StorageError::SchemaTooNew { found, supported }) => {
                assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
                assert!(e.to_string().contains("newer xmppd"), "{e}");
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("opened an environment from the future"),
        }
    }
}

#[test]
fn garbage_schema_version_is_corrupt() {
    let dir = TempDir::new("bad-version");
    let data = dir.path().join("data");
    {
        let s = Storage::open(&data, &opts()).unwrap();
        s.write_sync(|t| t.put(Table::Meta, b"schema_version", b"xx"))
            .unwrap();
    }
    assert!(matches!(
        Storage::open(&data, &opts()),
        Err(StorageError::Corrupt(_))
    ));
}

#[test]
fn readonly_handle_reads_and_refuses_writes() {
    let dir = TempDir::new("readonly");
    let data = dir.path().join("data");
    {
        let s = Storage::open(&data, &opts()).unwrap();
        s.accounts()
            .create("frank@example.org", &account(1))
            .unwrap();
    }
    let r = Storage::open_readonly(&data, &opts()).unwrap();
    assert_eq!(r.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(r.accounts().list().unwrap(), ["frank@example.org"]);
    assert!(matches!(
        r.accounts().create("g@example.org", &account(2)),
        Err(StorageError::ReadOnly)
    ));
    assert!(matches!(
        r.accounts()
            .set_async("frank@example.org", account(2))
            .wait(),
        Err(StorageError::ReadOnly)
    ));
    r.shutdown();

    let missing = dir.path().join("missing");
    assert!(matches!(
        Storage::open_readonly(&missing, &opts()),
        Err(StorageError::Io(_))
    ));
    assert!(
        !missing.exists(),
        "a read-only open must not create the directory"
    );
}

#[test]
fn one_process_cannot_open_a_directory_twice() {
    let dir = TempDir::new("twice");
    let s = open(&dir);
    assert!(matches!(
        Storage::open(&dir.path().join("data"), &opts()),
        Err(StorageError::AlreadyOpen(_))
    ));
    drop(s);
    open(&dir);
}

#[cfg(unix)]
#[test]
fn data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("perms");
    let s = open(&dir);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(s.path()), 0o700);
    assert_eq!(mode(&s.path().join("data.mdb")) & 0o077, 0);
}

#[test]
fn credential_changes_and_disabling_are_revoked_in_the_same_transaction() {
    let dir = TempDir::new("revoke");
    let s = open(&dir);
    let a = s.accounts();
    assert_eq!(a.revocation_seq().unwrap(), 0);
    a.create("alice@example.org", &account(1)).unwrap();
    // Creating revokes nothing; neither does a set that changes nothing that matters.
    let mut same = account(1);
    same.created_unix = 99;
    a.set("alice@example.org", &same).unwrap();
    assert_eq!(a.revocation_seq().unwrap(), 0);
    let (found, seq) = a.get_with_revocation_seq("alice@example.org").unwrap();
    assert_eq!((found, seq), (Some(same), 0));

    let new = account(2);
    a.set_password("alice@example.org", new.sha1.clone(), new.sha256.clone())
        .unwrap();
    assert!(a.set_disabled("alice@example.org", true).unwrap());
    assert!(!a.set_disabled("alice@example.org", true).unwrap());
    // A password change keeps the disabled flag (one read-modify-write transaction).
    let new = account(3);
    a.set_password("alice@example.org", new.sha1.clone(), new.sha256.clone())
        .unwrap();
    let stored = a.get("alice@example.org").unwrap().unwrap();
    assert!(stored.disabled);
    assert_eq!(stored.sha256, new.sha256);
    // Enabling revokes nothing.
    assert!(a.set_disabled("alice@example.org", false).unwrap());
    assert!(matches!(
        a.set_disabled("nobody@example.org", true),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        a.set_password("nobody@example.org", new.sha1, new.sha256),
        Err(StorageError::NotFound)
    ));

    let all = a.revocations_after(0).unwrap();
    let reasons: Vec<_> = all.entries.iter().map(|r| (r.seq, r.reason)).collect();
    assert_eq!(
        reasons,
        [
            (1, RevokeReason::PasswordChanged),
            (2, RevokeReason::Disabled),
            (3, RevokeReason::PasswordChanged)
        ]
    );
    assert_eq!((all.last, all.complete), (3, true));
    let tail = a.revocations_after(2).unwrap();
    assert_eq!((tail.entries.len(), tail.last, tail.complete), (1, 3, true));
    let none = a.revocations_after(3).unwrap();
    assert_eq!((none.entries.len(), none.last, none.complete), (0, 3, true));
}

#[test]
fn the_revocation_log_is_bounded_and_reports_what_it_dropped() {
    let dir = TempDir::new("revoke-trim");
    let s = open(&dir);
    let n = xmppd_storage::REVOCATIONS_KEEP_MAX + 5;
    s.write_sync(|t| {
        for i in 0..n {
            let jid = format!("u{i}@example.org");
            t.create_account(&jid, &account(i))?;
            let mut changed = account(i);
            changed.disabled = true;
            t.set_account(&jid, &changed)?;
        }
        Ok(())
    })
    .unwrap();
    let a = s.accounts();
    assert_eq!(a.revocation_seq().unwrap(), n);
    let kept = a.revocations_after(0).unwrap();
    assert_eq!(
        kept.entries.len() as u64,
        xmppd_storage::REVOCATIONS_KEEP_MAX
    );
    assert!(!kept.complete, "records 1..=5 were dropped");
    assert_eq!(kept.entries[0].seq, 6);
    assert!(a.revocations_after(5).unwrap().complete);
    assert!(!a.revocations_after(4).unwrap().complete);
}
