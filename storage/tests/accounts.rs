//! AccountStore, schema versioning and record decoding on a real environment.

mod common;

use common::{account, open, opts, TempDir};
use xmppd_storage::{Storage, StorageError, Table, SCHEMA_VERSION};

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
