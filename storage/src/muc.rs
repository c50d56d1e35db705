//! Persistent multi-user chat rooms (XEP-0045): one record per room, keyed by
//! `service \0 room-localpart`, so one prefix scan lists a service's rooms in order.
//!
//! The crate stores the room's configuration as opaque bytes (the server encodes it) and
//! affiliations as a stable byte per bare JID; it knows no XMPP semantics.
//!
//! Rooms are not per-account records: a write checks no account, and account deletion
//! leaves them alone. A record is written whole and refused above [`MAX_RECORD`] bytes
//! ([`StorageError::TooLarge`]), the storage's own backstop behind the server's bounds.

use crate::codec::{Decoder, Encoder};
use crate::key;
use crate::table::Table;
use crate::txn::WriteTxn;
use crate::{Storage, StorageError};

/// The largest encoded room record stored (4 MiB): a room must not outgrow what LMDB handles
/// comfortably (one value is copied whole on every read and rewritten on every change).
pub(crate) const MAX_RECORD: usize = 4 << 20;

/// One affiliation of a persistent room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MucAffiliation {
    /// The affiliated bare JID (normalized).
    pub jid: String,
    /// The affiliation as the server's stable byte (the crate does not interpret it).
    pub affiliation: u8,
    /// The nick reserved for the JID (XEP-0045 §7.10), if any.
    pub nick: Option<String>,
    /// The reason given with the change (kept for outcast lists), if any.
    pub reason: Option<String>,
}

/// A persistent room as stored.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MucRoom {
    /// The configuration, encoded by the server.
    pub config: Vec<u8>,
    /// The subject and the occupant nick that set it (empty: set by the room), if one is set.
    pub subject: Option<(String, String)>,
    /// When the subject was set (Unix seconds; 0 when no subject).
    pub subject_at: u64,
    /// Affiliations other than `none`, in the order the server gives them.
    pub affiliations: Vec<MucAffiliation>,
}

/// Read access to persistent rooms. Writes are [`WriteTxn`] methods
/// ([`put_muc_room`](WriteTxn::put_muc_room), [`delete_muc_room`](WriteTxn::delete_muc_room)).
#[derive(Clone)]
pub struct MucStore {
    storage: Storage,
}

impl MucStore {
    pub(crate) fn new(storage: Storage) -> MucStore {
        MucStore { storage }
    }

    /// The room `room` (its localpart) of `service` (the service's domain), if stored.
    pub fn room(&self, service: &str, room: &str) -> Result<Option<MucRoom>, StorageError> {
        crate::fault::read(service)?;
        let key = key::contact(service, room)?;
        self.storage
            .read(|txn| txn.get(Table::MucRooms, &key)?.map(decode).transpose())
    }

    /// The localparts of `service`'s persistent rooms, in byte order, at most `limit`, starting
    /// after `after` (exclusive) when given: for paged listings (XEP-0059) and disco#items.
    pub fn room_names(
        &self,
        service: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.storage
            .names_under(Table::MucRooms, "muc room", service, after, limit)
    }

    /// How many persistent rooms `service` has.
    pub fn count(&self, service: &str) -> Result<usize, StorageError> {
        self.storage.count_under(Table::MucRooms, service)
    }
}

/// Room writes inside a write transaction.
impl WriteTxn<'_> {
    /// Stores `record` as room `room` of `service`, replacing any previous record.
    pub fn put_muc_room(
        &mut self,
        service: &str,
        room: &str,
        record: &MucRoom,
    ) -> Result<(), StorageError> {
        crate::fault::write(service)?;
        let key = key::contact(service, room)?;
        let value = encode(record);
        if value.len() > MAX_RECORD {
            return Err(StorageError::TooLarge {
                what: "muc room",
                size: value.len(),
                limit: MAX_RECORD,
            });
        }
        self.put(Table::MucRooms, &key, &value)
    }

    /// Removes room `room` of `service`; returns whether it was stored.
    pub fn delete_muc_room(&mut self, service: &str, room: &str) -> Result<bool, StorageError> {
        crate::fault::write(service)?;
        self.delete(Table::MucRooms, &key::contact(service, room)?)
    }
}

/// Room record format 1 (service and room are the key): `u8 1 | bytes config | u8 subject
/// (0 none, 1 set) | [bytes setter nick | bytes subject] | u64 subject_at | u32 affiliation
/// count | affiliation...`, each `bytes jid | u8 affiliation | u8 nick (0 none, 1 set) |
/// [bytes nick] | u8 reason (0 none, 1 set) | [bytes reason]`.
const ROOM_V1: u8 = 1;

pub(crate) fn encode(room: &MucRoom) -> Vec<u8> {
    let mut e = Encoder::new(ROOM_V1);
    e.bytes(&room.config);
    match &room.subject {
        Some((subject, nick)) => {
            e.u8(1).bytes(nick.as_bytes()).bytes(subject.as_bytes());
        }
        None => {
            e.u8(0);
        }
    }
    e.u64(room.subject_at);
    // Bounded by the server's affiliation limit (and MAX_RECORD), far below u32::MAX.
    e.u32(u32::try_from(room.affiliations.len()).expect("more than 4G affiliations"));
    for a in &room.affiliations {
        e.bytes(a.jid.as_bytes()).u8(a.affiliation);
        optional(&mut e, a.nick.as_deref());
        optional(&mut e, a.reason.as_deref());
    }
    e.finish()
}

fn optional(e: &mut Encoder, v: Option<&str>) {
    match v {
        Some(v) => {
            e.u8(1).bytes(v.as_bytes());
        }
        None => {
            e.u8(0);
        }
    }
}

pub(crate) fn decode(buf: &[u8]) -> Result<MucRoom, StorageError> {
    let (mut d, version) = Decoder::new(buf, "muc room")?;
    if version != ROOM_V1 {
        return Err(d.corrupt(&format!("unknown record format {version}")));
    }
    let config = d.bytes()?.to_vec();
    let subject = if present(&mut d)? {
        let nick = d.str()?.to_owned();
        Some((d.str()?.to_owned(), nick))
    } else {
        None
    };
    let subject_at = d.u64()?;
    let count = d.u32()?;
    // Not preallocated from `count`: a corrupt count must not allocate before failing.
    let mut affiliations = Vec::new();
    for _ in 0..count {
        let jid = d.str()?.to_owned();
        let affiliation = d.u8()?;
        let nick = present(&mut d)?.then(|| d.str()).transpose()?;
        let reason = present(&mut d)?.then(|| d.str()).transpose()?;
        affiliations.push(MucAffiliation {
            jid,
            affiliation,
            nick: nick.map(str::to_owned),
            reason: reason.map(str::to_owned),
        });
    }
    d.finish()?;
    Ok(MucRoom {
        config,
        subject,
        subject_at,
        affiliations,
    })
}

/// A presence flag: 0 absent, 1 present, anything else corrupt.
fn present(d: &mut Decoder<'_>) -> Result<bool, StorageError> {
    match d.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        f => Err(d.corrupt(&format!("unknown presence flag {f}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testing::{every_truncation_is_corrupt, garbage_never_panics};
    use crate::Options;
    use std::path::{Path, PathBuf};

    fn sample() -> MucRoom {
        MucRoom {
            config: b"\x01\x02config bytes\x00".to_vec(),
            subject: Some(("Fire burn and cauldron bubble!".into(), "thirdwitch".into())),
            subject_at: 1_700_000_000,
            affiliations: vec![
                MucAffiliation {
                    jid: "crone1@shakespeare.lit".into(),
                    affiliation: 1,
                    nick: Some("firstwitch".into()),
                    reason: None,
                },
                MucAffiliation {
                    jid: "hag66@shakespeare.lit".into(),
                    affiliation: 3,
                    nick: None,
                    reason: None,
                },
                MucAffiliation {
                    jid: "earlofcambridge@shakespeare.lit".into(),
                    affiliation: 5,
                    nick: Some("".into()),
                    reason: Some("Treason".into()),
                },
                MucAffiliation {
                    jid: "wiccarocks@shakespeare.lit".into(),
                    affiliation: 0,
                    nick: None,
                    reason: Some("".into()),
                },
            ],
        }
    }

    #[test]
    fn record_round_trips_truncations_garbage() {
        let room_set = MucRoom {
            subject: Some(("".into(), "".into())),
            ..MucRoom::default()
        };
        for room in [sample(), MucRoom::default(), room_set] {
            let buf = encode(&room);
            assert_eq!(decode(&buf).unwrap(), room);
            every_truncation_is_corrupt(&buf, decode);
        }
        garbage_never_panics(&encode(&sample()), decode);
        let mut v2 = encode(&sample());
        v2[0] = 2;
        assert!(matches!(decode(&v2), Err(StorageError::Corrupt(_))));
        // A presence flag other than 0 or 1 is corrupt, not "present".
        let mut flag = encode(&MucRoom::default());
        flag[1 + 4] = 2;
        assert!(matches!(decode(&flag), Err(StorageError::Corrupt(_))));
    }

    /// A fresh data directory, removed on drop (after the storage using it is dropped).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let dir = std::env::temp_dir().join(format!(
                "xmppd-storage-muc-{tag}-{}-{}-{nanos}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            TempDir(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn open(dir: &TempDir) -> Storage {
        let opts = Options {
            map_size: 64 << 20,
            ..Options::default()
        };
        Storage::open(dir.path(), &opts).unwrap()
    }

    fn put(s: &Storage, service: &str, room: &str, record: &MucRoom) {
        s.write_sync(|t| t.put_muc_room(service, room, record))
            .unwrap();
    }

    fn names(s: &Storage, service: &str, after: Option<&str>, limit: usize) -> Vec<String> {
        s.muc().room_names(service, after, limit).unwrap()
    }

    #[test]
    fn store_read_replace_delete() {
        let dir = TempDir::new("crud");
        let s = open(&dir);
        let muc = s.muc();
        assert_eq!(muc.room("conf.x", "coven").unwrap(), None);
        // No account is needed: rooms are not per-user records.
        put(&s, "conf.x", "coven", &sample());
        assert_eq!(muc.room("conf.x", "coven").unwrap(), Some(sample()));
        assert_eq!(muc.room("conf.y", "coven").unwrap(), None);
        assert_eq!(muc.room("conf.x", "coven2").unwrap(), None);

        let replaced = MucRoom {
            config: b"new".to_vec(),
            ..MucRoom::default()
        };
        put(&s, "conf.x", "coven", &replaced);
        assert_eq!(muc.room("conf.x", "coven").unwrap(), Some(replaced));
        assert_eq!(muc.count("conf.x").unwrap(), 1);

        // Through the group-committed writer too.
        let deleted = s
            .submit(|t| t.delete_muc_room("conf.x", "coven"))
            .wait()
            .unwrap();
        assert!(deleted);
        assert_eq!(muc.room("conf.x", "coven").unwrap(), None);
        assert!(!s
            .write_sync(|t| t.delete_muc_room("conf.x", "coven"))
            .unwrap());
        assert_eq!(muc.count("conf.x").unwrap(), 0);
    }

    #[test]
    fn invalid_keys_are_refused() {
        let dir = TempDir::new("keys");
        let s = open(&dir);
        for (service, room) in [
            ("", "r"),
            ("conf.x", ""),
            ("conf\0x", "r"),
            ("conf.x", "r\0s"),
        ] {
            assert!(matches!(
                s.write_sync(|t| t.put_muc_room(service, room, &MucRoom::default())),
                Err(StorageError::InvalidKey(_))
            ));
            assert!(matches!(
                s.muc().room(service, room),
                Err(StorageError::InvalidKey(_))
            ));
        }
        assert!(matches!(
            s.muc().room_names("", None, 10),
            Err(StorageError::InvalidKey(_))
        ));
        assert!(matches!(
            s.muc().count(""),
            Err(StorageError::InvalidKey(_))
        ));
    }

    #[test]
    fn room_names_page_in_order_within_one_service() {
        let dir = TempDir::new("names");
        let s = open(&dir);
        // `conf.a` is a prefix of `conf.ab`; neighbours on both sides of `conf.a \0`.
        let rooms = ["delta", "alpha", "charlie", "bravo", "echo"];
        for room in rooms {
            put(&s, "conf.a", room, &MucRoom::default());
        }
        for (service, room) in [
            ("conf.ab", "aaa"),
            ("conf.ab", "zzz"),
            ("conf.", "x"),
            ("conf.a.b", "m"),
            ("conf", "a"),
            ("conf.b", "alpha"),
        ] {
            put(&s, service, room, &MucRoom::default());
        }
        let all = ["alpha", "bravo", "charlie", "delta", "echo"];
        assert_eq!(names(&s, "conf.a", None, 100), all);
        assert_eq!(names(&s, "conf.a", None, 5), all);
        assert_eq!(names(&s, "conf.a", None, 2), ["alpha", "bravo"]);
        assert_eq!(names(&s, "conf.a", None, 0), Vec::<String>::new());
        assert_eq!(names(&s, "conf.a", Some("bravo"), 2), ["charlie", "delta"]);
        assert_eq!(names(&s, "conf.a", Some("delta"), 2), ["echo"]);
        assert_eq!(names(&s, "conf.a", Some("echo"), 2), Vec::<String>::new());
        // `after` need not name a stored room, nor be a valid key.
        assert_eq!(names(&s, "conf.a", Some("b"), 1), ["bravo"]);
        assert_eq!(names(&s, "conf.a", Some("bravo0"), 1), ["charlie"]);
        assert_eq!(names(&s, "conf.a", Some(""), 1), ["alpha"]);
        assert_eq!(names(&s, "conf.a", Some("zzz"), 10), Vec::<String>::new());
        // Paging through one at a time sees every room once.
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = names(&s, "conf.a", after.as_deref(), 2);
            if page.is_empty() {
                break;
            }
            after = page.last().cloned();
            paged.extend(page);
        }
        assert_eq!(paged, all);

        assert_eq!(names(&s, "conf.ab", None, 10), ["aaa", "zzz"]);
        assert_eq!(names(&s, "conf.b", None, 10), ["alpha"]);
        assert_eq!(names(&s, "conf", None, 10), ["a"]);
        assert_eq!(names(&s, "nope", None, 10), Vec::<String>::new());
        assert_eq!(s.muc().count("conf.a").unwrap(), 5);
        assert_eq!(s.muc().count("conf.ab").unwrap(), 2);
        assert_eq!(s.muc().count("conf.b").unwrap(), 1);
        assert_eq!(s.muc().count("nope").unwrap(), 0);
        // Deleting from the neighbours leaves `conf.a` alone.
        s.write_sync(|t| t.delete_muc_room("conf.ab", "aaa"))
            .unwrap();
        assert_eq!(names(&s, "conf.a", None, 100), all);
        assert_eq!(s.muc().count("conf.ab").unwrap(), 1);
    }

    #[test]
    fn oversized_records_are_refused() {
        let dir = TempDir::new("big");
        let s = open(&dir);
        let overhead = encode(&MucRoom::default()).len();
        let at_limit = MucRoom {
            config: vec![7; MAX_RECORD - overhead],
            ..MucRoom::default()
        };
        assert_eq!(encode(&at_limit).len(), MAX_RECORD);
        put(&s, "conf.x", "big", &at_limit);
        assert_eq!(s.muc().room("conf.x", "big").unwrap(), Some(at_limit));

        let too_big = MucRoom {
            config: vec![7; MAX_RECORD - overhead + 1],
            ..MucRoom::default()
        };
        match s.write_sync(|t| t.put_muc_room("conf.x", "big", &too_big)) {
            Err(StorageError::TooLarge { size, limit, .. }) => {
                assert_eq!((size, limit), (MAX_RECORD + 1, MAX_RECORD));
            }
            other => panic!("oversized record: {other:?}"),
        }
        assert!(s
            .write_sync(|t| t.put_muc_room("conf.x", "big", &too_big))
            .is_err_and(|e| e.is_full()));
        // Refused without touching the stored record; affiliations count too.
        assert_eq!(
            s.muc().room("conf.x", "big").unwrap().unwrap().config.len(),
            MAX_RECORD - overhead
        );
        let many = MucRoom {
            affiliations: vec![
                MucAffiliation {
                    jid: "x".repeat(1000),
                    affiliation: 1,
                    nick: None,
                    reason: None,
                };
                5000
            ],
            ..MucRoom::default()
        };
        assert!(matches!(
            s.write_sync(|t| t.put_muc_room("conf.x", "many", &many)),
            Err(StorageError::TooLarge { .. })
        ));
        assert_eq!(s.muc().room("conf.x", "many").unwrap(), None);
        assert_eq!(s.muc().count("conf.x").unwrap(), 1);
    }
}
