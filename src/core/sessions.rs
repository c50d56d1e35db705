//! The shard-local session table: which resources of which accounts are connected here, and
//! the handle through which stanzas reach a connection.
//!
//! Accounts live on their home shard, so this table is the whole truth about an account's
//! resources and needs no lock.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;
use std::time::Instant;

use ahash::AHashMap;
use smallvec::SmallVec;

use crate::config::ConflictPolicy;
use crate::xmpp::error::{StanzaCondition, StanzaError, StreamCondition, StreamError};
use crate::xmpp::jid::Jid;

thread_local! {
    /// Freed send buffers, reused so that idle connections hold no buffer and busy ones do not
    /// allocate per flush.
    static BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

const POOLED_CAPACITY: usize = 16 * 1024;
/// The send queue may briefly hold this many times `--max-send-queue` before the client is
/// disconnected at once.
pub const HARD_LIMIT_FACTOR: usize = 4;
/// A partly sent queue is compacted once this much of it was sent.
const COMPACT_AT: usize = 32 * 1024;
const POOL_SIZE: usize = 256;

/// Take an empty buffer from the shard's pool.
pub fn take_buffer() -> Vec<u8> {
    BUFFERS
        .with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(4096))
}

/// Return a buffer to the shard's pool (large ones are freed).
pub fn give_buffer(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > POOLED_CAPACITY {
        return;
    }
    buf.clear();
    BUFFERS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_SIZE {
            p.push(buf);
        }
    });
}

/// The shared end of one client connection: its send queue and control flags. The connection
/// task owns the socket; everything else on the shard writes through this handle.
pub struct ClientHandle {
    out: RefCell<Vec<u8>>,
    /// How much of `out` was already handed to the socket (or TLS).
    sent: Cell<usize>,
    waker: RefCell<Option<Waker>>,
    close: RefCell<Option<StreamError>>,
    max_queue: usize,
    /// Since when the unsent queue has been over `max_queue` (a slow reader's grace period).
    over_since: Cell<Option<Instant>>,
    /// When the connection was accepted (or adopted).
    pub created: Instant,
    /// Last time any bytes arrived.
    pub last_rx: Cell<Instant>,
    /// When a keepalive ping was sent and not yet followed by any data.
    pub ping_sent: Cell<Option<Instant>>,
    /// The bound full JID, once bound.
    pub jid: RefCell<Option<Jid>>,
}

impl ClientHandle {
    /// A handle whose send queue may exceed `max_queue` unsent bytes only for a grace period
    /// (see [`ClientHandle::slow_since`]) and never exceed `HARD_LIMIT_FACTOR` times it.
    pub fn new(max_queue: usize, created: Instant) -> ClientHandle {
        ClientHandle {
            out: RefCell::new(Vec::new()),
            sent: Cell::new(0),
            waker: RefCell::new(None),
            close: RefCell::new(None),
            max_queue,
            over_since: Cell::new(None),
            created,
            last_rx: Cell::new(created),
            ping_sent: Cell::new(None),
            jid: RefCell::new(None),
        }
    }

    /// Queue bytes written by `f` for sending. A client that does not read is disconnected:
    /// at once when its queue passes the hard limit, otherwise when the sweeper finds it over
    /// the soft limit for longer than the grace period. Never buffered without end.
    pub fn send_with(&self, f: impl FnOnce(&mut Vec<u8>)) {
        if self.close.borrow().is_some() {
            return;
        }
        let mut out = self.out.borrow_mut();
        if out.capacity() == 0 {
            *out = take_buffer();
        }
        let was_empty = out.len() == self.sent.get();
        f(&mut out);
        let unsent = out.len() - self.sent.get();
        drop(out);
        if unsent > self.max_queue {
            if unsent > self.max_queue.saturating_mul(HARD_LIMIT_FACTOR) {
                self.request_close(StreamError::with_text(
                    StreamCondition::PolicyViolation,
                    "send queue overflow: the client does not read",
                ));
                return;
            }
            if self.over_since.get().is_none() {
                self.over_since.set(Some(Instant::now()));
            }
        }
        if was_empty {
            self.wake();
        }
    }

    /// Since when the queue has been over the soft limit without draining below it.
    pub fn slow_since(&self) -> Option<Instant> {
        self.over_since.get()
    }

    /// Queue bytes for sending.
    pub fn send(&self, bytes: &[u8]) {
        self.send_with(|o| o.extend_from_slice(bytes));
    }

    /// Ask the connection to close with a stream error (the first request wins).
    pub fn request_close(&self, err: StreamError) {
        let mut c = self.close.borrow_mut();
        if c.is_none() {
            *c = Some(err);
            drop(c);
            self.wake();
        }
    }

    /// The pending close request, if any.
    pub fn take_close(&self) -> Option<StreamError> {
        self.close.borrow_mut().take()
    }

    /// True once a close was requested.
    pub fn closing(&self) -> bool {
        self.close.borrow().is_some()
    }

    /// Register the connection task's waker.
    pub fn set_waker(&self, w: &Waker) {
        let mut slot = self.waker.borrow_mut();
        match slot.as_ref() {
            Some(old) if old.will_wake(w) => {}
            _ => *slot = Some(w.clone()),
        }
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    /// The send queue, for the connection task (and for writers that bypass the bound:
    /// stream negotiation and final errors).
    pub fn out(&self) -> std::cell::RefMut<'_, Vec<u8>> {
        self.out.borrow_mut()
    }

    /// Bytes queued and not yet handed to the socket.
    pub fn unsent(&self) -> usize {
        self.out.borrow().len() - self.sent.get()
    }

    /// Hand unsent bytes to `write`, which returns how many it took (or is not ready). The
    /// queue is compacted as it drains and its buffer returned to the pool once empty.
    pub fn drain_with<E>(
        &self,
        write: impl FnOnce(&[u8]) -> std::task::Poll<Result<usize, E>>,
    ) -> std::task::Poll<Result<usize, E>> {
        let mut out = self.out.borrow_mut();
        let sent = self.sent.get();
        let Some(unsent) = out.get(sent..).filter(|u| !u.is_empty()) else {
            return std::task::Poll::Ready(Ok(0));
        };
        let r = write(unsent);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            let sent = sent + n;
            if out.len() - sent <= self.max_queue {
                self.over_since.set(None);
            }
            if sent >= out.len() {
                self.sent.set(0);
                give_buffer(std::mem::take(&mut *out));
            } else if sent >= COMPACT_AT {
                out.drain(..sent);
                self.sent.set(0);
            } else {
                self.sent.set(sent);
            }
        }
        r
    }

    /// Drop everything queued (the connection is gone).
    pub fn discard(&self) {
        self.sent.set(0);
        give_buffer(std::mem::take(&mut *self.out.borrow_mut()));
    }
}

/// One connected resource.
pub struct Resource {
    /// The full JID.
    pub jid: Jid,
    /// Its connection.
    pub handle: Rc<ClientHandle>,
    /// Presence priority while available; None while not available (RFC 6121 §4.1).
    pub priority: Option<i8>,
    /// The last available presence broadcast (stamped), replayed to the account's new resources
    /// and to contacts' probes.
    pub last_presence: Option<Box<[u8]>>,
    /// The resource requested the roster in this session, so it gets roster pushes
    /// (RFC 6121 §2.1.6 "interested resource").
    pub interested: bool,
    /// The resource used roster versioning, so its pushes carry `ver`.
    pub rosterver: bool,
    /// Entities that got directed available presence from this resource and are not contacts
    /// with a presence subscription: they get unavailable presence when it goes (RFC 6121 §4.6).
    pub directed: Vec<Box<str>>,
}

/// All connected resources of one account.
#[derive(Default)]
pub struct AccountSessions {
    /// Resources in bind order.
    pub resources: SmallVec<[Resource; 2]>,
}

impl AccountSessions {
    /// The resource with this exact name (resources compare case-sensitively).
    pub fn get(&self, resource: &str) -> Option<&Resource> {
        self.resources
            .iter()
            .find(|r| r.jid.resource() == Some(resource))
    }

    /// Mutable access to one resource.
    pub fn get_mut(&mut self, resource: &str) -> Option<&mut Resource> {
        self.resources
            .iter_mut()
            .find(|r| r.jid.resource() == Some(resource))
    }

    /// Available resources with non-negative priority that share the highest priority.
    pub fn best(&self) -> impl Iterator<Item = &Resource> {
        let top = self
            .resources
            .iter()
            .filter_map(|r| r.priority)
            .filter(|p| *p >= 0)
            .max();
        self.resources
            .iter()
            .filter(move |r| top.is_some() && r.priority == top)
    }

    /// Available resources with non-negative priority.
    pub fn non_negative(&self) -> impl Iterator<Item = &Resource> {
        self.resources
            .iter()
            .filter(|r| matches!(r.priority, Some(p) if p >= 0))
    }

    /// Available resources.
    pub fn available(&self) -> impl Iterator<Item = &Resource> {
        self.resources.iter().filter(|r| r.priority.is_some())
    }
}

/// The shard's session table, keyed by normalized bare JID.
#[derive(Default)]
pub struct Sessions {
    accounts: AHashMap<Box<str>, AccountSessions>,
}

impl Sessions {
    /// The sessions of an account, if any resource is connected.
    pub fn account(&self, bare: &str) -> Option<&AccountSessions> {
        self.accounts.get(bare)
    }

    /// Mutable access.
    pub fn account_mut(&mut self, bare: &str) -> Option<&mut AccountSessions> {
        self.accounts.get_mut(bare)
    }

    /// Number of connected resources on this shard.
    pub fn len(&self) -> usize {
        self.accounts.values().map(|a| a.resources.len()).sum()
    }

    /// True if no resource is connected.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Bind a resource for `bare` (RFC 6120 §7). `requested` is the resourceprep'd resource
    /// the client asked for, or None for a server-generated one. Returns the bound full JID
    /// and, under the kick-old policy, the displaced resource.
    pub fn bind(
        &mut self,
        bare: &Jid,
        requested: Option<&str>,
        handle: Rc<ClientHandle>,
        policy: ConflictPolicy,
        max_resources: usize,
    ) -> Result<(Jid, Option<Resource>), StanzaError> {
        let account = self.accounts.entry(bare.bare_str().into()).or_default();
        let mut displaced = None;
        let resource = match requested {
            None => unique_resource(account),
            Some(r) if account.get(r).is_none() => r.to_string(),
            Some(r) => match policy {
                ConflictPolicy::Refuse => {
                    return Err(StanzaError::with_text(
                        StanzaCondition::Conflict,
                        "resource in use",
                    ))
                }
                ConflictPolicy::Rename => format!("{r}.{}", random_token(6)),
                ConflictPolicy::KickOld => {
                    let pos = account
                        .resources
                        .iter()
                        .position(|x| x.jid.resource() == Some(r));
                    if let Some(pos) = pos {
                        displaced = Some(account.resources.remove(pos));
                    }
                    r.to_string()
                }
            },
        };
        if account.resources.len() >= max_resources {
            if account.resources.is_empty() {
                self.accounts.remove(bare.bare_str());
            }
            return Err(StanzaError::with_text(
                StanzaCondition::ResourceConstraint,
                "too many resources bound",
            ));
        }
        let jid = bare
            .with_resource(&resource)
            .map_err(|_| StanzaError::new(StanzaCondition::BadRequest))?;
        account.resources.push(Resource {
            jid: jid.clone(),
            handle,
            priority: None,
            last_presence: None,
            interested: false,
            rosterver: false,
            directed: Vec::new(),
        });
        Ok((jid, displaced))
    }

    /// Remove a resource if it still belongs to `handle` (a displaced session must not remove
    /// its successor). Returns the removed resource.
    pub fn unbind(&mut self, jid: &Jid, handle: &Rc<ClientHandle>) -> Option<Resource> {
        let account = self.accounts.get_mut(jid.bare_str())?;
        let pos = account
            .resources
            .iter()
            .position(|r| &r.jid == jid && Rc::ptr_eq(&r.handle, handle))?;
        let removed = account.resources.remove(pos);
        if account.resources.is_empty() {
            self.accounts.remove(jid.bare_str());
        }
        Some(removed)
    }
}

fn unique_resource(account: &AccountSessions) -> String {
    loop {
        let r = random_token(12);
        if account.get(&r).is_none() {
            return r;
        }
    }
}

/// A random token of `len` characters from [A-Za-z0-9] (server-generated resources,
/// CORE-BIND-03: unpredictable).
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len];
    crate::util::random_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> Rc<ClientHandle> {
        Rc::new(ClientHandle::new(1 << 20, Instant::now()))
    }

    #[test]
    fn bind_generates_unique_resources_core_bind_02() {
        let mut s = Sessions::default();
        let bare = Jid::parse("a@d").unwrap();
        let (j1, _) = s
            .bind(&bare, None, handle(), ConflictPolicy::KickOld, 8)
            .unwrap();
        let (j2, _) = s
            .bind(&bare, None, handle(), ConflictPolicy::KickOld, 8)
            .unwrap();
        assert_ne!(j1, j2);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn conflict_policies_core_bind_06() {
        let bare = Jid::parse("a@d").unwrap();
        for policy in [
            ConflictPolicy::KickOld,
            ConflictPolicy::Refuse,
            ConflictPolicy::Rename,
        ] {
            let mut s = Sessions::default();
            let old = handle();
            s.bind(&bare, Some("r"), old.clone(), policy, 8).unwrap();
            let res = s
                .bind(&bare, Some("r"), handle(), policy, 8)
                .map(|(j, d)| (j, d.map(|r| r.handle)));
            match policy {
                ConflictPolicy::KickOld => {
                    let (jid, displaced) = res.unwrap();
                    assert_eq!(jid.as_str(), "a@d/r");
                    assert!(Rc::ptr_eq(&displaced.unwrap(), &old));
                    assert_eq!(s.len(), 1);
                    // The displaced session's unbind does not remove its successor.
                    assert!(s.unbind(&jid, &old).is_none());
                    assert_eq!(s.len(), 1);
                }
                ConflictPolicy::Refuse => {
                    assert_eq!(res.err().unwrap().condition, StanzaCondition::Conflict);
                }
                ConflictPolicy::Rename => {
                    let (jid, displaced) = res.unwrap();
                    assert!(displaced.is_none());
                    assert_ne!(jid.as_str(), "a@d/r");
                    assert_eq!(s.len(), 2);
                }
            }
        }
    }

    #[test]
    fn resource_limit_core_bind_07() {
        let mut s = Sessions::default();
        let bare = Jid::parse("a@d").unwrap();
        s.bind(&bare, None, handle(), ConflictPolicy::KickOld, 1)
            .unwrap();
        let e = s
            .bind(&bare, None, handle(), ConflictPolicy::KickOld, 1)
            .err()
            .unwrap();
        assert_eq!(e.condition, StanzaCondition::ResourceConstraint);
    }

    #[test]
    fn best_resources_skip_negative_priority_im_msg_02() {
        let mut s = Sessions::default();
        let bare = Jid::parse("a@d").unwrap();
        for (r, p) in [("x", Some(-1)), ("y", Some(5)), ("z", Some(5)), ("w", None)] {
            s.bind(&bare, Some(r), handle(), ConflictPolicy::KickOld, 8)
                .unwrap();
            s.account_mut("a@d").unwrap().get_mut(r).unwrap().priority = p;
        }
        let acc = s.account("a@d").unwrap();
        let best: Vec<_> = acc.best().map(|r| r.jid.resource().unwrap()).collect();
        assert_eq!(best, vec!["y", "z"]);
        assert_eq!(acc.non_negative().count(), 2);
        assert_eq!(acc.available().count(), 3);
    }

    #[test]
    fn send_queue_soft_and_hard_limits() {
        let h = ClientHandle::new(100, Instant::now());
        h.send(&[b'x'; 80]);
        assert!(h.slow_since().is_none());
        h.send(&[b'x'; 80]);
        assert!(!h.closing(), "over the soft limit: grace period");
        assert!(h.slow_since().is_some());
        // Draining below the soft limit ends the grace period.
        let _ = h.drain_with(|u| std::task::Poll::Ready(Ok::<_, ()>(u.len() - 50)));
        assert!(h.slow_since().is_none());
        h.send(&[b'x'; 400]);
        assert!(h.closing(), "over the hard limit: at once");
    }
}
