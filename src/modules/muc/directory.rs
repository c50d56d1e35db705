//! The rooms of every service, shared by the shards: what the service answers about rooms it
//! may not hold on the asking shard (disco#items, MUC-DISCO-02) and the bounds that count
//! rooms across shards (`--muc-max-rooms`, `--muc-max-rooms-per-user`).
//!
//! Rooms are homed on `shard_of(room JID)`, so no shard sees them all. The directory is one
//! mutex-protected map, touched only when a room is created, configured or destroyed and
//! when the service's items are listed: never per stanza. Persistent rooms are read from
//! storage the first time a service's rooms are needed, so a room that has not been
//! entered since the server started is listed and counted too.

use std::collections::BTreeMap;
use std::sync::Mutex;

use xmppd_storage::{Storage, StorageError};

use super::config::RoomConfig;
use super::perm::Affiliation;

/// What the directory knows of a room.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Entry {
    /// Listed in disco#items.
    public: bool,
    /// Its `roomname`.
    name: String,
    /// Its owners' bare JIDs.
    owners: Vec<String>,
}

#[derive(Default)]
struct Inner {
    /// Services whose stored rooms were read.
    loaded: Vec<String>,
    /// (service, room localpart) → entry.
    rooms: BTreeMap<(String, String), Entry>,
}

/// Why a room may not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The service holds `--muc-max-rooms` rooms.
    ServiceFull,
    /// The creator owns `--muc-max-rooms-per-user` rooms.
    UserFull,
}

/// The rooms of every service (see the module docs).
#[derive(Default)]
pub struct Directory {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Directory")
    }
}

impl Directory {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the map consistent (every update is one
        // insert or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads `service`'s stored rooms once.
    fn load(inner: &mut Inner, storage: &Storage, service: &str) -> Result<(), StorageError> {
        if inner.loaded.iter().any(|s| s == service) {
            return Ok(());
        }
        let store = storage.muc();
        let mut after: Option<String> = None;
        loop {
            let names = store.room_names(service, after.as_deref(), 1000)?;
            let Some(last) = names.last().cloned() else {
                break;
            };
            for local in names {
                let Some(room) = store.room(service, &local)? else {
                    continue;
                };
                let Some(config) = RoomConfig::decode(&room.config) else {
                    tracing::warn!(
                        service,
                        room = local,
                        "stored room configuration unreadable"
                    );
                    continue;
                };
                let owners = room
                    .affiliations
                    .iter()
                    .filter(|a| Affiliation::from_u8(a.affiliation) == Some(Affiliation::Owner))
                    .map(|a| a.jid.clone())
                    .collect();
                let key = (service.to_owned(), local);
                inner.rooms.entry(key).or_insert(Entry {
                    public: config.public,
                    name: config.name,
                    owners,
                });
            }
            after = Some(last);
        }
        inner.loaded.push(service.to_owned());
        Ok(())
    }

    /// Records a new room of `service` created by `creator`, within the bounds.
    pub fn create(
        &self,
        storage: &Storage,
        service: &str,
        local: &str,
        creator: &str,
        max_rooms: usize,
        max_per_user: usize,
    ) -> Result<Result<(), Refusal>, StorageError> {
        let mut inner = self.lock();
        Self::load(&mut inner, storage, service)?;
        let key = (service.to_owned(), local.to_owned());
        if inner.rooms.contains_key(&key) {
            return Ok(Ok(()));
        }
        let of_service = inner
            .rooms
            .range((service.to_owned(), String::new())..)
            .take_while(|((s, _), _)| s == service);
        let (mut count, mut owned) = (0usize, 0usize);
        for (_, e) in of_service {
            count += 1;
            owned += usize::from(e.owners.iter().any(|o| o == creator));
        }
        if count >= max_rooms {
            return Ok(Err(Refusal::ServiceFull));
        }
        if owned >= max_per_user {
            return Ok(Err(Refusal::UserFull));
        }
        inner.rooms.insert(
            key,
            Entry {
                public: true,
                name: String::new(),
                owners: vec![creator.to_owned()],
            },
        );
        Ok(Ok(()))
    }

    /// A room's listing changed (configuration or owners).
    pub fn update(
        &self,
        service: &str,
        local: &str,
        public: bool,
        name: &str,
        owners: Vec<String>,
    ) {
        let mut inner = self.lock();
        inner.rooms.insert(
            (service.to_owned(), local.to_owned()),
            Entry {
                public,
                name: name.to_owned(),
                owners,
            },
        );
    }

    /// A room was destroyed.
    pub fn remove(&self, service: &str, local: &str) {
        self.lock()
            .rooms
            .remove(&(service.to_owned(), local.to_owned()));
    }

    /// `service`'s public rooms as (localpart, name), in localpart order.
    pub fn public_rooms(
        &self,
        storage: &Storage,
        service: &str,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let mut inner = self.lock();
        Self::load(&mut inner, storage, service)?;
        Ok(inner
            .rooms
            .range((service.to_owned(), String::new())..)
            .take_while(|((s, _), _)| s == service)
            .filter(|(_, e)| e.public)
            .map(|((_, local), e)| (local.clone(), e.name.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), &xmppd_storage::Options::default()).unwrap();
        (dir, s)
    }

    #[test]
    fn rooms_are_bounded_per_service_and_per_owner() {
        let (_d, s) = storage();
        let dir = Directory::default();
        assert_eq!(dir.create(&s, "c.a", "r1", "u@a", 3, 2).unwrap(), Ok(()));
        assert_eq!(dir.create(&s, "c.a", "r2", "u@a", 3, 2).unwrap(), Ok(()));
        assert_eq!(
            dir.create(&s, "c.a", "r3", "u@a", 3, 2).unwrap(),
            Err(Refusal::UserFull)
        );
        assert_eq!(dir.create(&s, "c.a", "r3", "v@a", 3, 2).unwrap(), Ok(()));
        assert_eq!(
            dir.create(&s, "c.a", "r4", "w@a", 3, 2).unwrap(),
            Err(Refusal::ServiceFull)
        );
        // Another service counts apart.
        assert_eq!(dir.create(&s, "c.b", "r4", "w@a", 3, 2).unwrap(), Ok(()));
        dir.remove("c.a", "r1");
        assert_eq!(dir.create(&s, "c.a", "r4", "w@a", 3, 2).unwrap(), Ok(()));
    }

    #[test]
    fn only_public_rooms_of_the_service_are_listed() {
        let (_d, s) = storage();
        let dir = Directory::default();
        for r in ["b", "a", "c"] {
            dir.create(&s, "c.a", r, "u@a", 10, 10).unwrap().unwrap();
        }
        dir.create(&s, "c.ab", "z", "u@a", 10, 10).unwrap().unwrap();
        dir.update("c.a", "b", false, "", vec!["u@a".into()]);
        dir.update("c.a", "c", true, "Cee", vec!["u@a".into()]);
        assert_eq!(
            dir.public_rooms(&s, "c.a").unwrap(),
            vec![("a".into(), String::new()), ("c".into(), "Cee".into())]
        );
    }
}
