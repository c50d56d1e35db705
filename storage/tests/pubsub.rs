//! Pubsub nodes and items (XEP-0060/0163) and private XML (XEP-0049) on a real environment:
//! durability across reopening, account deletion, the migration from schema version 4.

mod common;

use common::{account, check_stored_record, open, opts, users, write, TempDir};
use xmppd_storage::{
    Account, PubsubItem, PubsubNode, Storage, StorageError, Table, PUBSUB_MAX_ITEM_RECORD,
    SCHEMA_VERSION,
};

const JULIET: &str = "juliet@capulet.lit";
const ROMEO: &str = "romeo@montague.lit";
const GEOLOC: &str = "http://jabber.org/protocol/geoloc";
const MOOD: &str = "http://jabber.org/protocol/mood";

fn item(id: &str, at: u64) -> PubsubItem {
    PubsubItem {
        id: id.into(),
        publisher: format!("{JULIET}/balcony"),
        published_at: at,
        payload: format!("<geoloc xmlns='{GEOLOC}'><text>{id}</text></geoloc>").into(),
    }
}

fn ids(s: &Storage, service: &str, node: &str) -> Vec<String> {
    s.pubsub()
        .items(service, node, None)
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect()
}

/// Every key of the pubsub and private XML tables.
fn keys(s: &Storage) -> Vec<(Table, Vec<u8>)> {
    s.write_sync(|t| {
        let mut out = Vec::new();
        for table in [
            Table::PubsubNodes,
            Table::PubsubItems,
            Table::PubsubOrder,
            Table::PubsubSubs,
            Table::PrivateXml,
        ] {
            for entry in t.entries(table, b"")? {
                out.push((table, entry?.0.to_vec()));
            }
        }
        Ok(out)
    })
    .unwrap()
}

#[test]
fn acknowledged_writes_survive_reopening() {
    let dir = TempDir::new("pubsub-durable");
    {
        let s = open(&dir);
        users(&s, &[JULIET]);
        // Group-committed, as the server writes: durable once the completion resolves.
        write(&s, |t| {
            assert!(t.create_pubsub_node(JULIET, GEOLOC, b"max_items=2")?);
            assert!(t.create_pubsub_node(JULIET, MOOD, b"")?);
            t.put_private(JULIET, "storage:bookmarks", b"<storage/>")
        });
        for (n, id) in ["a", "b", "c"].into_iter().enumerate() {
            let removed = write(&s, move |t| {
                t.publish_pubsub_item(JULIET, GEOLOC, &item(id, n as u64), 2)
            });
            assert_eq!(
                removed,
                Some(if id == "c" { vec!["a".into()] } else { vec![] })
            );
        }
        write(&s, |t| {
            t.publish_pubsub_item(JULIET, MOOD, &item("m", 9), 1)
        });
        assert!(write(&s, |t| t.retract_pubsub_item(JULIET, MOOD, "m")));
        s.shutdown();
    }
    for reopen in 0..2 {
        let s = open(&dir);
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(
            s.pubsub().node(JULIET, GEOLOC).unwrap(),
            Some(PubsubNode {
                config: b"max_items=2".to_vec(),
                items: 2
            })
        );
        assert_eq!(
            s.pubsub().node_names(JULIET, None, 10).unwrap(),
            [GEOLOC, MOOD]
        );
        assert_eq!(s.pubsub().node(JULIET, MOOD).unwrap().unwrap().items, 0);
        assert_eq!(
            s.private().get(JULIET, "storage:bookmarks").unwrap(),
            Some(b"<storage/>".to_vec())
        );
        if reopen == 0 {
            assert_eq!(
                s.pubsub().items(JULIET, GEOLOC, None).unwrap(),
                [item("c", 2), item("b", 1)]
            );
            // Sequence numbers carry on after a reopen: a new item is the newest, and
            // republishing an old one moves it to the front.
            write(&s, |t| {
                t.publish_pubsub_item(JULIET, GEOLOC, &item("b", 5), 3)
            });
            write(&s, |t| {
                t.publish_pubsub_item(JULIET, GEOLOC, &item("d", 6), 3)
            });
            assert_eq!(ids(&s, JULIET, GEOLOC), ["d", "b", "c"]);
            assert_eq!(
                write(&s, |t| t.publish_pubsub_item(
                    JULIET,
                    GEOLOC,
                    &item("e", 7),
                    2
                )),
                Some(vec!["c".into(), "b".into()])
            );
            write(&s, |t| {
                t.publish_pubsub_item(JULIET, GEOLOC, &item("d", 6), 2)
            });
        } else {
            assert_eq!(ids(&s, JULIET, GEOLOC), ["d", "e"]);
            assert_eq!(
                s.pubsub().item(JULIET, GEOLOC, "e").unwrap(),
                Some(item("e", 7))
            );
        }
    }
    // A read-only handle (the admin CLI) reads the same.
    let r = Storage::open_readonly(&dir.path().join("data"), &opts()).unwrap();
    assert_eq!(ids(&r, JULIET, GEOLOC), ["d", "e"]);
    assert_eq!(r.private().count(JULIET).unwrap(), 1);
    assert!(matches!(
        r.write_sync(|t| t.create_pubsub_node(JULIET, "x", b"")),
        Err(StorageError::ReadOnly)
    ));
}

#[test]
fn deleting_an_account_purges_its_nodes_items_and_private_xml_only() {
    let dir = TempDir::new("pubsub-cascade");
    let s = open(&dir);
    // `juliet@capulet.lit` is a prefix of the neighbour's JID.
    let neighbour = "juliet@capulet.lit.example";
    users(&s, &[JULIET, ROMEO, neighbour]);
    for user in [JULIET, ROMEO, neighbour] {
        write(&s, move |t| {
            for node in [GEOLOC, MOOD] {
                t.create_pubsub_node(user, node, b"cfg")?;
                for id in ["1", "2", "3"] {
                    t.publish_pubsub_item(user, node, &item(id, 0), 10)?;
                }
            }
            t.put_private(user, "storage:bookmarks", b"<storage/>")?;
            t.put_private(user, "storage:rosternotes", b"<storage/>")
        });
    }
    let before = keys(&s);
    assert_eq!(before.len(), 3 * (2 * 7 + 2));
    s.accounts().delete(JULIET).unwrap();
    let mut prefix = JULIET.as_bytes().to_vec();
    prefix.push(0);
    let expected: Vec<_> = before
        .iter()
        .filter(|(_, k)| !k.starts_with(&prefix))
        .cloned()
        .collect();
    assert_eq!(keys(&s), expected);
    assert_eq!(expected.len(), 2 * (2 * 7 + 2));
    assert_eq!(s.pubsub().node_count(JULIET).unwrap(), 0);
    assert_eq!(s.pubsub().node(JULIET, GEOLOC).unwrap(), None);
    assert_eq!(s.private().count(JULIET).unwrap(), 0);
    for user in [ROMEO, neighbour] {
        assert_eq!(ids(&s, user, GEOLOC), ["3", "2", "1"]);
        assert_eq!(s.pubsub().node(user, MOOD).unwrap().unwrap().items, 3);
        assert_eq!(s.private().count(user).unwrap(), 2);
    }

    // Nothing comes back for the deleted account, and a new one starts empty.
    assert!(matches!(
        s.submit(|t| t.create_pubsub_node(JULIET, GEOLOC, b""))
            .wait(),
        Err(StorageError::NoSuchAccount)
    ));
    assert!(matches!(
        s.submit(|t| t.put_private(JULIET, "storage:bookmarks", b"<x/>"))
            .wait(),
        Err(StorageError::NoSuchAccount)
    ));
    assert_eq!(keys(&s), expected);
    s.accounts().create(JULIET, &account(7)).unwrap();
    assert_eq!(s.pubsub().node_count(JULIET).unwrap(), 0);
    assert!(write(&s, |t| t.create_pubsub_node(JULIET, GEOLOC, b"")));
    assert_eq!(ids(&s, JULIET, GEOLOC), Vec::<String>::new());

    // Group-committed deletion purges the same way.
    s.accounts().delete_async(ROMEO).wait().unwrap();
    assert_eq!(s.pubsub().node_count(ROMEO).unwrap(), 0);
    assert_eq!(s.private().count(ROMEO).unwrap(), 0);
    assert_eq!(ids(&s, neighbour, MOOD), ["3", "2", "1"]);
}

#[test]
fn a_failed_write_leaves_the_node_as_it_was() {
    let dir = TempDir::new("pubsub-rollback");
    let s = open(&dir);
    users(&s, &[JULIET]);
    write(&s, |t| t.create_pubsub_node(JULIET, GEOLOC, b""));
    for id in ["a", "b"] {
        write(&s, move |t| {
            t.publish_pubsub_item(JULIET, GEOLOC, &item(id, 0), 10)
        });
    }
    let before = keys(&s);
    // A closure that publishes, retracts, trims and then fails rolls all of it back.
    let r = s
        .submit(|t| {
            t.publish_pubsub_item(JULIET, GEOLOC, &item("c", 0), 1)?;
            t.retract_pubsub_item(JULIET, GEOLOC, "c")?;
            t.put_private(JULIET, "x", b"<x/>")?;
            let big = PubsubItem {
                payload: vec![0; PUBSUB_MAX_ITEM_RECORD],
                ..item("d", 0)
            };
            t.publish_pubsub_item(JULIET, GEOLOC, &big, 10)
        })
        .wait();
    assert!(matches!(r, Err(StorageError::TooLarge { .. })), "{r:?}");
    assert_eq!(keys(&s), before);
    assert_eq!(ids(&s, JULIET, GEOLOC), ["b", "a"]);
    assert_eq!(s.pubsub().node(JULIET, GEOLOC).unwrap().unwrap().items, 2);
}

#[test]
fn damaged_stored_records_are_corrupt() {
    let dir = TempDir::new("pubsub-corrupt");
    let s = open(&dir);
    users(&s, &[JULIET]);
    write(&s, |t| {
        t.create_pubsub_node(JULIET, GEOLOC, b"cfg")?;
        t.publish_pubsub_item(JULIET, GEOLOC, &item("a", 0), 10)?;
        t.put_private(JULIET, "storage:bookmarks", b"<storage/>")
    });
    let node_key = [JULIET.as_bytes(), b"\0", GEOLOC.as_bytes()].concat();
    let item_key = [&node_key[..], b"\0a"].concat();
    let order_key = [&node_key[..], b"\0", &0u64.to_be_bytes()].concat();
    let private_key = [JULIET.as_bytes(), b"\0storage:bookmarks"].concat();
    check_stored_record(&s, Table::PubsubNodes, &node_key, || {
        s.pubsub().node(JULIET, GEOLOC)
    });
    check_stored_record(&s, Table::PubsubItems, &item_key, || {
        s.pubsub().item(JULIET, GEOLOC, "a")
    });
    check_stored_record(&s, Table::PubsubOrder, &order_key, || {
        s.pubsub().items(JULIET, GEOLOC, None)
    });
    check_stored_record(&s, Table::PrivateXml, &private_key, || {
        s.private().get(JULIET, "storage:bookmarks")
    });
    assert_eq!(ids(&s, JULIET, GEOLOC), ["a"]);
}

/// Account record format 1, written out by hand as a version 4 build stored it.
fn v1_account_record(a: &Account) -> Vec<u8> {
    let mut out = vec![1u8];
    for keys in [&a.sha1, &a.sha256] {
        out.extend_from_slice(&(keys.salt.len() as u32).to_le_bytes());
        out.extend_from_slice(&keys.salt);
        out.extend_from_slice(&keys.iterations.to_le_bytes());
        for field in [&keys.stored_key, &keys.server_key] {
            out.extend_from_slice(&(field.len() as u32).to_le_bytes());
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(&a.created_unix.to_le_bytes());
    out.push(u8::from(a.disabled));
    out
}

/// An environment as schema version 4 left it: its twelve tables, version 4 recorded, one
/// account with a vCard.
fn write_v4_environment(dir: &std::path::Path) {
    use lmdb::{DatabaseFlags, Environment, Transaction, WriteFlags};
    const V4_TABLES: [&str; 12] = [
        "meta",
        "accounts",
        "roster",
        "roster_version",
        "sub_requests",
        "offline",
        "offline_meta",
        "vcards",
        "revocations",
        "privacy_lists",
        "privacy_default",
        "muc_rooms",
    ];
    std::fs::create_dir_all(dir).unwrap();
    let env = Environment::new()
        .set_max_dbs(V4_TABLES.len() as u32)
        .set_map_size(opts().map_size)
        .open(dir)
        .unwrap();
    let dbs: Vec<_> = V4_TABLES
        .iter()
        .map(|name| env.create_db(Some(name), DatabaseFlags::empty()).unwrap())
        .collect();
    let mut txn = env.begin_rw_txn().unwrap();
    txn.put(
        dbs[0],
        b"schema_version",
        &4u32.to_le_bytes(),
        WriteFlags::empty(),
    )
    .unwrap();
    txn.put(
        dbs[1],
        &JULIET,
        &v1_account_record(&account(4)),
        WriteFlags::empty(),
    )
    .unwrap();
    let vcard = [&[1u8][..], &8u32.to_le_bytes(), b"<vCard/>"].concat();
    txn.put(dbs[7], &JULIET, &vcard, WriteFlags::empty())
        .unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_version_4_environment_is_migrated_on_open() {
    let dir = TempDir::new("migrate-v4");
    let data = dir.path().join("data");
    write_v4_environment(&data);

    match Storage::open_readonly(&data, &opts()) {
        Err(StorageError::NeedsMigration { found, supported }) => {
            assert_eq!((found, supported), (4, SCHEMA_VERSION));
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("read-only open accepted a version 4 environment"),
    }
    {
        let s = Storage::open(&data, &opts()).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(s.accounts().get(JULIET).unwrap(), Some(account(4)));
        assert_eq!(s.vcards().get(JULIET).unwrap(), Some(b"<vCard/>".to_vec()));
        // The new tables exist and start empty.
        assert_eq!(keys(&s), []);
        assert_eq!(s.pubsub().node_count(JULIET).unwrap(), 0);
        assert_eq!(s.private().count(JULIET).unwrap(), 0);
        write(&s, |t| {
            t.create_pubsub_node(JULIET, GEOLOC, b"cfg")?;
            t.publish_pubsub_item(JULIET, GEOLOC, &item("a", 1), 10)?;
            t.subscribe_pubsub(JULIET, GEOLOC, "romeo@montague.lit", 5, 10)?;
            t.put_private(JULIET, "storage:bookmarks", b"<storage/>")
        });
    }
    type Open = fn(&std::path::Path, &xmppd_storage::Options) -> Result<Storage, StorageError>;
    for open in [Storage::open as Open, Storage::open_readonly] {
        let s = open(&data, &opts()).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(ids(&s, JULIET, GEOLOC), ["a"]);
        assert_eq!(
            s.pubsub().subscribers(JULIET, GEOLOC, 10).unwrap()[0].jid,
            "romeo@montague.lit"
        );
        assert_eq!(
            s.private().get(JULIET, "storage:bookmarks").unwrap(),
            Some(b"<storage/>".to_vec())
        );
        assert!(s.vcards().get(JULIET).unwrap().is_some());
    }
}
