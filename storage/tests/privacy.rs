//! PrivacyStore and the privacy methods of WriteTxn on a real environment.

mod common;

use common::{users, write, TempDir};
use xmppd_storage::{
    privacy_stanzas, DefaultList, Privacy, PrivacyItem, PrivacyList, PrivacyMatch, StorageError,
    Subscription,
};

const ME: &str = "juliet@example.com";

fn list(name: &str, n: u32) -> PrivacyList {
    PrivacyList {
        name: name.into(),
        items: (0..n)
            .map(|i| PrivacyItem {
                order: i * 10,
                allow: i % 2 == 1,
                what: match i % 3 {
                    0 => PrivacyMatch::Jid(format!("u{i}@example.net")),
                    1 => PrivacyMatch::Group("Friends".into()),
                    _ => PrivacyMatch::Subscription(Subscription::None),
                },
                stanzas: if i % 2 == 0 {
                    0
                } else {
                    privacy_stanzas::MESSAGE
                },
            })
            .collect(),
    }
}

#[test]
fn lists_default_and_purge() {
    let dir = TempDir::new("privacy-crud");
    let s = common::open(&dir);
    users(&s, &[ME, "romeo@example.net"]);
    let p = s.privacy();
    assert_eq!(p.load(ME).unwrap(), Privacy::default());
    assert_eq!(p.default_list(ME).unwrap(), None);

    let (a, b) = (list("public", 3), list("private", 5));
    let (a2, b2) = (a.clone(), b.clone());
    write(&s, move |t| {
        t.put_privacy_list(ME, &a2)?;
        t.put_privacy_list(ME, &b2)?;
        t.set_privacy_default(ME, Some("public"))
    });
    let loaded = p.load(ME).unwrap();
    // Sorted by name; the default names one of them.
    assert_eq!(loaded.lists, [b.clone(), a.clone()]);
    assert_eq!(loaded.default.as_deref(), Some("public"));
    assert_eq!(loaded.default_list(), Some(&a));
    assert_eq!(p.default_list(ME).unwrap(), Some(a.clone()));
    // Another user's lists are theirs.
    assert_eq!(p.load("romeo@example.net").unwrap(), Privacy::default());

    // Replace, delete, clear the default.
    let a3 = list("public", 1);
    let a4 = a3.clone();
    write(&s, move |t| t.put_privacy_list(ME, &a4));
    assert_eq!(p.default_list(ME).unwrap(), Some(a3));
    let deleted = s
        .write_sync(|t| {
            let first = t.delete_privacy_list(ME, "private")?;
            let again = t.delete_privacy_list(ME, "private")?;
            t.set_privacy_default(ME, None)?;
            Ok((first, again))
        })
        .unwrap();
    assert_eq!(deleted, (true, false));
    let loaded = p.load(ME).unwrap();
    assert_eq!((loaded.lists.len(), loaded.default), (1, None));

    // No account, no lists; and deleting the account removes them.
    let r = s.write_sync(|t| t.put_privacy_list("nobody@example.com", &list("x", 1)));
    assert!(matches!(r, Err(StorageError::NoSuchAccount)), "{r:?}");
    write(&s, |t| t.set_privacy_default(ME, Some("public")));
    s.accounts().delete(ME).unwrap();
    assert_eq!(p.load(ME).unwrap(), Privacy::default());
}

#[test]
fn default_list_since_a_copy_sees_every_change() {
    let dir = TempDir::new("privacy-since");
    let s = common::open(&dir);
    users(&s, &[ME]);
    let p = s.privacy();
    assert_eq!(p.default_list_since(ME, None).unwrap(), DefaultList::None);
    let a = list("a", 4);
    let a2 = a.clone();
    write(&s, move |t| {
        t.put_privacy_list(ME, &a2)?;
        t.set_privacy_default(ME, Some("a"))
    });
    // No copy: decoded, with the record to compare next time.
    let DefaultList::Changed { list: got, record } = p.default_list_since(ME, None).unwrap() else {
        panic!("a default list and no copy");
    };
    assert_eq!(got, a);
    let known = Some(("a", &record[..]));
    assert_eq!(
        p.default_list_since(ME, known).unwrap(),
        DefaultList::Unchanged
    );
    // The same bytes under another name are another list.
    assert!(matches!(
        p.default_list_since(ME, Some(("b", &record[..]))).unwrap(),
        DefaultList::Changed { .. }
    ));
    // An edit of the list (one item fewer, or the same count with other items) is seen.
    let a3 = list("a", 3);
    let a4 = a3.clone();
    write(&s, move |t| t.put_privacy_list(ME, &a4));
    match p.default_list_since(ME, known).unwrap() {
        DefaultList::Changed { list, .. } => assert_eq!(list, a3),
        other => panic!("edit not seen: {other:?}"),
    }
    let mut a5 = list("a", 4);
    a5.items[3].allow = !a5.items[3].allow;
    let a6 = a5.clone();
    write(&s, move |t| t.put_privacy_list(ME, &a6));
    match p.default_list_since(ME, known).unwrap() {
        DefaultList::Changed { list, .. } => assert_eq!(list, a5),
        other => panic!("same-size edit not seen: {other:?}"),
    }
    // Another default, then none.
    let b = list("b", 2);
    let b2 = b.clone();
    write(&s, move |t| {
        t.put_privacy_list(ME, &b2)?;
        t.set_privacy_default(ME, Some("b"))
    });
    match p.default_list_since(ME, known).unwrap() {
        DefaultList::Changed { list, .. } => assert_eq!(list, b),
        other => panic!("new default not seen: {other:?}"),
    }
    write(&s, |t| t.set_privacy_default(ME, None));
    assert_eq!(p.default_list_since(ME, known).unwrap(), DefaultList::None);
}
