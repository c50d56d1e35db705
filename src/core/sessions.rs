//! The shard-local session table: which resources of which accounts are connected here, and
//! the handle through which stanzas reach a connection.
//!
//! Accounts live on their home shard, so this table is the whole truth about an account's
//! resources and needs no lock.
//!
//! # Send-queue policy
//!
//! Everything for a client goes through its [`ClientHandle`], a queue of unsent bytes with a
//! soft bound (`--max-send-queue`). Who pays when a client's link drains slower than stanzas
//! arrive depends on who sent them:
//!
//! * **Other entities' stanzas** (routed with [`ClientHandle::offer`]) are queued only while
//!   they fit under the soft bound (a stanza larger than the bound still goes into an empty
//!   queue). Otherwise they are refused and the router bounces them to their sender with
//!   `<resource-constraint/>` (type `wait`): a flood costs the flooder errors, not the
//!   recipient its connection, and never grows the queue past the bound.
//! * **The client's own traffic** (answers to its requests, its roster pushes, stanzas from
//!   its own account, server output through [`ClientHandle::send_with`]) is always queued,
//!   up to a hard bound of [`HARD_LIMIT_FACTOR`] times the soft one; past it the client is
//!   disconnected at once with `policy-violation` (it asked for more than it reads).
//! * **A client that stops reading** is disconnected (by the c2s sweeper, `policy-violation`)
//!   once its queue has been over the soft bound, or has refused a stanza, for
//!   `--slow-client-grace` without a single byte written to its socket. Any progress restarts
//!   the clock, so a slow but live reader is never disconnected for being slow; a dead one is,
//!   and its bounded queue is freed.
//!
//! Long server-initiated output (the offline backlog) is flow-controlled instead of queued at
//! once: [`ClientHandle::space_for`] waits for room, and [`ClientHandle::request_ack`] sends
//! an IQ request after a chunk and resolves when the client answers it, which proves that the
//! client read everything before it.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
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

/// A stanza was refused because the recipient's send queue is full (see the module
/// documentation): the sender should get `<resource-constraint/>` (type `wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Congested;

/// The connection went away (or is closing) before the awaited event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// The shared end of one client connection: its send queue and control flags. The connection
/// task owns the socket; everything else on the shard writes through this handle.
pub struct ClientHandle {
    out: RefCell<Vec<u8>>,
    /// How much of `out` was already handed to the socket (or TLS).
    sent: Cell<usize>,
    waker: RefCell<Option<Waker>>,
    close: RefCell<Option<StreamError>>,
    max_queue: usize,
    /// Since when the client has written nothing while its queue was over `max_queue` or
    /// refusing stanzas (a slow reader's grace period).
    over_since: Cell<Option<Instant>>,
    /// The connection task released the handle: nothing queued will be sent.
    gone: Cell<bool>,
    /// Flow-control waiters and acknowledgement requests; allocated on first use (offline
    /// delivery), so most sessions never pay for it.
    flow: RefCell<Option<Box<Flow>>>,
    /// Where each queued stanza ends, once a transport asked for stanza boundaries
    /// ([`ClientHandle::keep_boundaries`]); None (and free) otherwise.
    bounds: RefCell<Option<Box<Bounds>>>,
    /// Stanzas queued so far (each [`ClientHandle::send_with`] call is one stanza).
    stanzas: Cell<u64>,
    /// When the connection was accepted (or adopted).
    pub created: Instant,
    /// Last time any bytes arrived.
    pub last_rx: Cell<Instant>,
    /// When a keepalive ping was sent and not yet followed by any data.
    pub ping_sent: Cell<Option<Instant>>,
    /// The bound full JID, once bound.
    pub jid: RefCell<Option<Jid>>,
    /// The account revocation sequence number as of the snapshot the credentials were checked
    /// in (issue 8): revocations after it end this session.
    pub auth_seq: Cell<u64>,
    /// Per-module state that the session's own stanzas reach without a session-table lookup
    /// ([`FromClient::handle`](crate::core::FromClient::handle)): a copy the owning module
    /// keeps in step with its state in [`Resource::ext`] (the privacy lists' list in force).
    pub ext: RefCell<Extensions>,
}

impl ClientHandle {
    /// A handle whose send queue may exceed `max_queue` unsent bytes only with the client's
    /// own traffic, only while the client makes progress (see [`ClientHandle::slow_since`]),
    /// and never `HARD_LIMIT_FACTOR` times it (except by one stanza into an empty queue).
    pub fn new(max_queue: usize, created: Instant) -> ClientHandle {
        ClientHandle {
            out: RefCell::new(Vec::new()),
            sent: Cell::new(0),
            waker: RefCell::new(None),
            close: RefCell::new(None),
            max_queue,
            over_since: Cell::new(None),
            gone: Cell::new(false),
            flow: RefCell::new(None),
            bounds: RefCell::new(None),
            stanzas: Cell::new(0),
            created,
            last_rx: Cell::new(created),
            ping_sent: Cell::new(None),
            jid: RefCell::new(None),
            auth_seq: Cell::new(0),
            ext: RefCell::default(),
        }
    }

    /// Queue bytes written by `f` for sending: the client's own traffic, which is not
    /// subject to the soft limit (see the module documentation). A client that does not read
    /// is disconnected: at once when its queue passes the hard limit, otherwise when the
    /// sweeper finds it over the soft limit with no progress for the grace period. Never
    /// buffered without end.
    pub fn send_with(&self, f: impl FnOnce(&mut Vec<u8>)) {
        if self.close.borrow().is_some() {
            return;
        }
        let mut out = self.out.borrow_mut();
        if out.capacity() == 0 {
            *out = take_buffer();
        }
        let was_empty = out.len() == self.sent.get();
        let before = out.len();
        f(&mut out);
        if out.len() > before {
            self.stanzas.set(self.stanzas.get() + 1);
            if let Some(b) = self.bounds.borrow_mut().as_mut() {
                b.ends.push_back(b.base + out.len() as u64);
            }
        }
        let unsent = out.len() - self.sent.get();
        drop(out);
        if unsent > self.max_queue {
            // An empty queue takes one stanza of any size (the stanza limit is checked on
            // input); only a backlog past the hard limit means the client does not read.
            if !was_empty && unsent > self.max_queue.saturating_mul(HARD_LIMIT_FACTOR) {
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

    /// Since when the client has written nothing to its socket while its queue was over the
    /// soft limit or refusing stanzas; the sweeper disconnects it after the grace period.
    pub fn slow_since(&self) -> Option<Instant> {
        self.over_since.get()
    }

    /// Queue bytes for sending (the client's own traffic: see [`ClientHandle::send_with`]).
    pub fn send(&self, bytes: &[u8]) {
        self.send_with(|o| o.extend_from_slice(bytes));
    }

    /// Queue a stanza routed to this client from `from` (normalized, as routed; empty when
    /// unknown) under the send-queue policy: queued if it fits under the soft limit (or the
    /// queue is empty), refused with [`Congested`] otherwise, and then the caller bounces it
    /// to the sender. Stanzas from the client's own account or its server are the client's
    /// own traffic and are always queued, as by [`ClientHandle::send`].
    pub fn offer(&self, from: &str, stanza: &[u8]) -> Result<(), Congested> {
        let unsent = self.unsent();
        let fits = unsent == 0 || unsent.saturating_add(stanza.len()) <= self.max_queue;
        if fits || self.closing() || self.is_own(from) {
            self.send(stanza);
            return Ok(());
        }
        if self.over_since.get().is_none() {
            self.over_since.set(Some(Instant::now()));
        }
        Err(Congested)
    }

    /// True if `from` is this client's own account or its server.
    fn is_own(&self, from: &str) -> bool {
        let jid = self.jid.borrow();
        let Some(jid) = jid.as_ref() else {
            // Not bound: nothing is routed to it.
            return true;
        };
        let bare = crate::xmpp::jid::bare_of(from);
        !bare.is_empty() && (bare == jid.bare_str() || bare == jid.domain())
    }

    /// Wait until `len` more bytes fit in the queue without taking its unsent bytes over
    /// `limit` (or the queue is empty): flow control for long output the server generates.
    /// Resolves with [`Gone`] once the connection is closing or closed.
    pub fn space_for(self: &Rc<Self>, len: usize, limit: usize) -> SpaceFor {
        SpaceFor {
            handle: self.clone(),
            len,
            limit,
        }
    }

    /// Queue an IQ request to the bound client (a XEP-0199 ping from its server) and return a
    /// future that resolves when the client answers it (result or error: RFC 6120 §8.2.3
    /// obliges it to answer), which proves that it has read everything queued before the
    /// request. None if no resource is bound or the connection is closing.
    ///
    /// The router reports answers with [`ClientHandle::answered`].
    pub fn request_ack(self: &Rc<Self>) -> Option<AckWait> {
        if self.gone.get() || self.closing() {
            return None;
        }
        let to = self.jid.borrow().clone()?;
        let n = {
            let mut flow = self.flow.borrow_mut();
            let flow = flow.get_or_insert_with(Box::default);
            flow.next_ack += 1;
            flow.acks.push(AckSlot {
                n: flow.next_ack,
                answered: false,
                waker: None,
            });
            flow.next_ack
        };
        self.send_with(|out| {
            out.extend_from_slice(b"<iq type='get' id='");
            out.extend_from_slice(ACK_PREFIX.as_bytes());
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"' from='");
            crate::xml::escape_attr(to.domain(), out);
            out.extend_from_slice(b"' to='");
            crate::xml::escape_attr(to.as_str(), out);
            out.extend_from_slice(b"'><ping xmlns='urn:xmpp:ping'/></iq>");
        });
        Some(AckWait {
            handle: self.clone(),
            n,
        })
    }

    /// The client answered (result or error) an IQ request of the server with this `id`: if
    /// it is one [`ClientHandle::request_ack`] sent, its waiter resolves. Returns whether it
    /// was. Answers nobody waits for are ignored.
    pub fn answered(&self, id: &str) -> bool {
        let Some(n) = id
            .strip_prefix(ACK_PREFIX)
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return false;
        };
        let mut flow = self.flow.borrow_mut();
        let Some(slot) = flow
            .as_mut()
            .and_then(|f| f.acks.iter_mut().find(|s| s.n == n))
        else {
            return false;
        };
        slot.answered = true;
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
        true
    }

    /// Ask the connection to close with a stream error (the first request wins).
    pub fn request_close(&self, err: StreamError) {
        let mut c = self.close.borrow_mut();
        if c.is_none() {
            *c = Some(err);
            drop(c);
            self.wake();
            self.wake_flow();
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

    /// Wake the connection task (it has work besides the queue: a server-to-server stream's
    /// dialback requests).
    pub fn wake_task(&self) {
        self.wake();
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
            if *n > 0 {
                // Progress restarts the grace period; below the soft limit it ends it.
                let over = out.len() - sent > self.max_queue;
                self.over_since.set(over.then(Instant::now));
                self.wake_space_waiters();
            }
            if sent >= out.len() {
                self.sent.set(0);
                self.dropped_front(out.len());
                give_buffer(std::mem::take(&mut *out));
            } else if sent >= COMPACT_AT {
                out.drain(..sent);
                self.sent.set(0);
                self.dropped_front(sent);
            } else {
                self.sent.set(sent);
            }
        }
        r
    }

    /// Keep stanza boundaries from now on: a transport that sends one stanza at a time
    /// (RFC 7395 WebSocket: one element per message) or counts them (XEP-0198) asks for it.
    /// Everything written with [`ClientHandle::send_with`] (and `send`, `offer`) is one
    /// stanza; bytes written straight into [`ClientHandle::out`] (stream negotiation) belong
    /// to the stanza after them, so such a transport frames negotiation itself.
    pub fn keep_boundaries(&self) {
        let mut b = self.bounds.borrow_mut();
        if b.is_none() {
            *b = Some(Box::default());
        }
    }

    /// The length of the next unsent stanza (None: boundaries are not kept, or nothing
    /// complete is queued).
    pub fn next_stanza_len(&self) -> Option<usize> {
        let b = self.bounds.borrow();
        let b = b.as_ref()?;
        let at = b.base + self.sent.get() as u64;
        let end = b.ends.iter().find(|e| **e > at)?;
        usize::try_from(end - at).ok()
    }

    /// Stanzas queued so far (each `send_with` call is one).
    pub fn stanzas_queued(&self) -> u64 {
        self.stanzas.get()
    }

    /// `n` bytes left the front of the queue: boundaries behind them are forgotten.
    fn dropped_front(&self, n: usize) {
        if let Some(b) = self.bounds.borrow_mut().as_mut() {
            b.base += n as u64;
            while b.ends.front().is_some_and(|e| *e <= b.base) {
                b.ends.pop_front();
            }
        }
    }

    /// Drop everything queued (the connection is gone); waiters resolve with [`Gone`].
    pub fn discard(&self) {
        self.gone.set(true);
        if let Some(b) = self.bounds.borrow_mut().as_mut() {
            b.ends.clear();
            b.base = 0;
        }
        self.sent.set(0);
        give_buffer(std::mem::take(&mut *self.out.borrow_mut()));
        self.wake_flow();
    }

    /// True once the connection is closing or closed: nothing queued now will be sent.
    pub fn is_gone(&self) -> bool {
        self.gone.get() || self.closing()
    }

    fn wake_space_waiters(&self) {
        let waiters = match self.flow.borrow_mut().as_mut() {
            Some(flow) if !flow.space.is_empty() => std::mem::take(&mut flow.space),
            _ => return,
        };
        for w in waiters {
            w.wake();
        }
    }

    /// Wake every flow-control and acknowledgement waiter (the connection is going).
    fn wake_flow(&self) {
        let (space, acks) = match self.flow.borrow_mut().as_mut() {
            Some(flow) => (
                std::mem::take(&mut flow.space),
                flow.acks
                    .iter_mut()
                    .filter_map(|s| s.waker.take())
                    .collect::<SmallVec<[Waker; 4]>>(),
            ),
            None => return,
        };
        for w in space.into_iter().chain(acks) {
            w.wake();
        }
    }
}

/// Stanza boundaries in a send queue, as offsets in the stream of everything ever queued
/// (so compaction moves `base`, not the ends).
#[derive(Default)]
struct Bounds {
    /// The stream offset of the queue's first byte.
    base: u64,
    /// Where each unsent (or partly sent) stanza ends, oldest first.
    ends: std::collections::VecDeque<u64>,
}

/// The id prefix of acknowledgement requests (`ack-1`, `ack-2`, ... per connection).
const ACK_PREFIX: &str = "ack-";

/// Flow-control state of a handle.
#[derive(Default)]
struct Flow {
    /// Tasks waiting for queue space ([`ClientHandle::space_for`]).
    space: SmallVec<[Waker; 1]>,
    /// Outstanding acknowledgement requests, oldest first; each removed when its
    /// [`AckWait`] is dropped, so bounded by the waits the caller keeps.
    acks: SmallVec<[AckSlot; 4]>,
    /// The number of the last acknowledgement request.
    next_ack: u64,
}

struct AckSlot {
    n: u64,
    answered: bool,
    waker: Option<Waker>,
}

/// Resolves when the queue has room (see [`ClientHandle::space_for`]).
pub struct SpaceFor {
    handle: Rc<ClientHandle>,
    len: usize,
    limit: usize,
}

impl Future for SpaceFor {
    type Output = Result<(), Gone>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let h = &self.handle;
        if h.is_gone() {
            return Poll::Ready(Err(Gone));
        }
        let unsent = h.unsent();
        if unsent == 0 || unsent.saturating_add(self.len) <= self.limit {
            return Poll::Ready(Ok(()));
        }
        let mut flow = h.flow.borrow_mut();
        let space = &mut flow.get_or_insert_with(Box::default).space;
        if !space.iter().any(|w| w.will_wake(cx.waker())) {
            space.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Resolves when the client answered an acknowledgement request (see
/// [`ClientHandle::request_ack`]). Dropping it forgets the request.
pub struct AckWait {
    handle: Rc<ClientHandle>,
    n: u64,
}

impl AckWait {
    /// True if the client has answered already (the future would resolve at once).
    pub fn is_answered(&self) -> bool {
        self.handle
            .flow
            .borrow()
            .as_ref()
            .and_then(|f| f.acks.iter().find(|s| s.n == self.n))
            .is_some_and(|s| s.answered)
    }
}

impl Future for AckWait {
    type Output = Result<(), Gone>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let h = &self.handle;
        let mut flow = h.flow.borrow_mut();
        let Some(slot) = flow
            .as_mut()
            .and_then(|f| f.acks.iter_mut().find(|s| s.n == self.n))
        else {
            return Poll::Ready(Err(Gone));
        };
        if slot.answered {
            return Poll::Ready(Ok(()));
        }
        if h.gone.get() || h.close.borrow().is_some() {
            return Poll::Ready(Err(Gone));
        }
        match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for AckWait {
    fn drop(&mut self) {
        if let Ok(mut flow) = self.handle.flow.try_borrow_mut() {
            if let Some(f) = flow.as_mut() {
                f.acks.retain(|s| s.n != self.n);
            }
        }
    }
}

/// One connected resource: what routing needs (its JID, connection and priority), plus each
/// module's own per-resource state in [`Resource::ext`].
pub struct Resource {
    /// The full JID.
    pub jid: Jid,
    /// Its connection.
    pub handle: Rc<ClientHandle>,
    /// Presence priority while available; None while not available (RFC 6121 §4.1). Set by
    /// the presence module; the router's delivery rules (§8.5) read it.
    pub priority: Option<i8>,
    /// Per-module state (e.g. RFC 6121's interested flag, last presence, directed presence),
    /// freed with the resource and handed to the session-ended chain with it.
    pub ext: Extensions,
}

/// Per-resource state of modules, one value per type. A module keeps its state in a private
/// type, so no other module can name, read or change it.
#[derive(Default)]
pub struct Extensions {
    /// Each value with its type's id, so a lookup compares ids without a virtual call per
    /// slot (these are read on the stanza path).
    slots: Vec<(TypeId, Box<dyn Any>)>,
}

impl Extensions {
    /// The value of type `T`, if set.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        let (_, b) = self.slots.iter().find(|(t, _)| *t == id)?;
        b.downcast_ref::<T>()
    }

    /// The value of type `T`, if set, mutably.
    pub fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        let id = TypeId::of::<T>();
        let (_, b) = self.slots.iter_mut().find(|(t, _)| *t == id)?;
        b.downcast_mut::<T>()
    }

    /// The value of type `T`, set to its default first if missing.
    pub fn get_or_default<T: Default + 'static>(&mut self) -> &mut T {
        let id = TypeId::of::<T>();
        let pos = match self.slots.iter().position(|(t, _)| *t == id) {
            Some(pos) => pos,
            None => {
                self.slots.push((id, Box::<T>::default()));
                self.slots.len() - 1
            }
        };
        self.slots[pos]
            .1
            .downcast_mut::<T>()
            .expect("slot holds the type it was found by")
    }
}

/// All connected resources of one account.
#[derive(Default)]
pub struct AccountSessions {
    /// Resources in bind order.
    pub resources: SmallVec<[Resource; 2]>,
    /// Per-module state of the account while it has sessions here (e.g. its default privacy
    /// list), freed with the last resource.
    pub ext: Extensions,
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
            ext: Extensions::default(),
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

    /// RFC 7395 / XEP-0198 groundwork: boundaries survive partial writes and compaction.
    #[test]
    fn send_queue_keeps_stanza_boundaries() {
        let h = handle();
        h.send(b"<a/>");
        assert_eq!(h.next_stanza_len(), None, "not kept until asked for");
        h.keep_boundaries();
        h.send(b"<bb/>");
        h.send_with(|o| o.extend_from_slice(b"<ccc/>"));
        h.send_with(|_| {});
        assert_eq!(h.stanzas_queued(), 3);
        // Bytes from before are part of the first marked stanza.
        assert_eq!(h.next_stanza_len(), Some(4 + 5));
        let take = |n: usize| {
            let r: std::task::Poll<Result<usize, ()>> =
                h.drain_with(|u| std::task::Poll::Ready(Ok(n.min(u.len()))));
            assert!(r.is_ready());
        };
        take(6);
        assert_eq!(h.next_stanza_len(), Some(3), "the rest of <bb/>");
        take(3);
        assert_eq!(h.next_stanza_len(), Some(6));
        // Past the compaction point the queue moves; the ends stay right.
        let big = vec![b'x'; COMPACT_AT + 10];
        h.send(&big);
        h.send(b"<d/>");
        take(6);
        assert_eq!(h.next_stanza_len(), Some(big.len()));
        take(COMPACT_AT + 1);
        assert_eq!(h.next_stanza_len(), Some(big.len() - COMPACT_AT - 1));
        take(big.len() - COMPACT_AT - 1);
        assert_eq!(h.next_stanza_len(), Some(4));
        take(4);
        assert_eq!(h.unsent(), 0);
        assert_eq!(h.next_stanza_len(), None);
        h.send(b"<e/>");
        assert_eq!(h.next_stanza_len(), Some(4));
    }

    #[test]
    fn extensions_hold_one_value_per_type_and_modules_see_only_their_own() {
        #[derive(Default, Debug, PartialEq)]
        struct A(u32);
        #[derive(Default, Debug, PartialEq)]
        struct B(&'static str);
        let mut e = Extensions::default();
        assert_eq!(e.get::<A>(), None);
        e.get_or_default::<A>().0 = 7;
        e.get_or_default::<B>().0 = "x";
        e.get_or_default::<A>().0 += 1;
        assert_eq!(e.get::<A>(), Some(&A(8)));
        assert_eq!(e.get::<B>(), Some(&B("x")));
        e.get_mut::<B>().unwrap().0 = "y";
        assert_eq!(e.get::<B>(), Some(&B("y")));
        assert_eq!(e.slots.len(), 2);
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

    fn bound(max_queue: usize) -> Rc<ClientHandle> {
        let h = Rc::new(ClientHandle::new(max_queue, Instant::now()));
        *h.jid.borrow_mut() = Some(Jid::parse("me@d/r").unwrap());
        h
    }

    fn drain(h: &ClientHandle, n: usize) {
        let _ = h.drain_with(|u| std::task::Poll::Ready(Ok::<_, ()>(n.min(u.len()))));
    }

    #[test]
    fn others_stanzas_are_refused_when_they_do_not_fit_issue_8c() {
        let h = bound(100);
        // An empty queue takes a stanza larger than the soft limit.
        assert_eq!(h.offer("x@d/r", &[b'x'; 150]), Ok(()));
        assert_eq!(h.offer("x@d/r", &[b'x'; 10]), Err(Congested));
        assert!(!h.closing(), "refusing is not disconnecting");
        assert!(h.slow_since().is_some(), "a refusing queue is on the clock");
        drain(&h, 100);
        assert!(h.slow_since().is_none(), "progress below the limit ends it");
        assert_eq!(h.offer("x@d/r", &[b'x'; 50]), Ok(()));
        assert_eq!(h.offer("x@d", &[b'x'; 50]), Err(Congested));
        assert_eq!(h.offer("", &[b'x'; 50]), Err(Congested), "unknown sender");
        // The client's own account and server are its own traffic.
        assert_eq!(h.offer("me@d/other", &[b'x'; 50]), Ok(()));
        assert_eq!(h.offer("d", &[b'x'; 50]), Ok(()));
        assert_eq!(h.unsent(), 200);
        // Never past the hard limit by others' stanzas, however many.
        for _ in 0..100 {
            let _ = h.offer("x@d/r", &[b'x'; 50]);
        }
        assert_eq!(h.unsent(), 200);
        assert!(!h.closing());
    }

    #[test]
    fn progress_restarts_the_grace_period_issue_8c() {
        let h = bound(100);
        h.send(&[b'x'; 300]);
        let first = h.slow_since().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        drain(&h, 10);
        let second = h.slow_since().unwrap();
        assert!(second > first, "some bytes written: the clock restarts");
        drain(&h, 0);
        assert_eq!(h.slow_since(), Some(second), "nothing written: it runs on");
    }

    #[test]
    fn space_for_waits_for_room_and_ends_with_the_connection_issue_8a() {
        use futures_lite::future::{block_on, poll_once};
        let h = bound(100);
        assert_eq!(block_on(h.space_for(500, 50)), Ok(()), "empty: always room");
        h.send(&[b'x'; 40]);
        assert_eq!(block_on(h.space_for(10, 50)), Ok(()));
        let mut wait = h.space_for(20, 50);
        assert_eq!(block_on(poll_once(&mut wait)), None);
        drain(&h, 15);
        assert_eq!(block_on(poll_once(&mut wait)), Some(Ok(())));
        let mut wait = h.space_for(40, 50);
        assert_eq!(block_on(poll_once(&mut wait)), None);
        h.discard();
        assert_eq!(block_on(poll_once(&mut wait)), Some(Err(Gone)));
    }

    #[test]
    fn acknowledgements_resolve_on_the_answer_issue_8a() {
        use futures_lite::future::{block_on, poll_once};
        let unbound = Rc::new(ClientHandle::new(100, Instant::now()));
        assert!(unbound.request_ack().is_none());
        let h = bound(1 << 20);
        let mut first = h.request_ack().unwrap();
        let mut second = h.request_ack().unwrap();
        let out = String::from_utf8(h.out().clone()).unwrap();
        assert_eq!(
            out,
            "<iq type='get' id='ack-1' from='d' to='me@d/r'><ping xmlns='urn:xmpp:ping'/></iq>\
             <iq type='get' id='ack-2' from='d' to='me@d/r'><ping xmlns='urn:xmpp:ping'/></iq>"
        );
        assert_eq!(block_on(poll_once(&mut first)), None);
        assert!(!h.answered("ka1") && !h.answered("ack-x") && !h.answered("ack-9"));
        assert!(h.answered("ack-2"));
        assert!(second.is_answered() && !first.is_answered());
        assert_eq!(block_on(poll_once(&mut second)), Some(Ok(())));
        drop(second);
        assert!(!h.answered("ack-2"), "forgotten once its waiter is dropped");
        h.request_close(StreamError::new(StreamCondition::PolicyViolation));
        assert_eq!(block_on(poll_once(&mut first)), Some(Err(Gone)));
        assert!(h.request_ack().is_none());
    }
}
