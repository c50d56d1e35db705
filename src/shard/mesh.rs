//! Cross-shard channels: one bounded lock-free inbox (crossbeam-channel) per shard, a doorbell
//! that wakes the receiving executor, and a per-shard outbox that batches stanzas per
//! destination and flushes them once per scheduler tick.
//!
//! Back-pressure: a full inbox is neither a drop nor a block. The flusher keeps the batch,
//! marks itself as waiting and sleeps until the receiver rings its space doorbell; while a
//! destination's pending batch is above the high-water mark, [`Outbox::congested`] is true and
//! connection tasks stop reading their sockets (see `Outbox::wait_uncongested`), which pushes
//! the pressure back to TCP.

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use atomic_waker::AtomicWaker;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use futures_lite::future::poll_fn;

use super::ShardMsg;
use crate::xmpp::stanza::StanzaType;

/// Wakes one executor from any thread. Ringing an already-rung bell is one atomic swap.
#[derive(Default)]
pub struct Doorbell {
    rung: AtomicBool,
    waker: AtomicWaker,
}

impl Doorbell {
    /// Ring: wake the waiting task unless the bell is already rung.
    pub fn ring(&self) {
        if !self.rung.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Ready once the bell was rung since the last time this returned Ready.
    pub fn poll(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        self.waker.register(cx.waker());
        if self.rung.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Wait until rung.
    pub async fn wait(&self) {
        poll_fn(|cx| self.poll(cx)).await
    }

    /// Ring and wake the waiting task even if the bell is already rung (for stop requests: a
    /// bell whose earlier wake-up went unnoticed must not swallow this one).
    pub fn ring_hard(&self) {
        self.rung.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// How often a waiting mesh task looks at its inbox and the stop flag even without a wake-up.
/// Foreign wake-ups are delivered through glommio's eventfd; this bounds the cost of one that
/// is lost (a missed notification then delays, never stalls).
pub const MESH_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The shared side of the mesh: every shard's inbox sender and doorbells. Send + Sync; one
/// `Arc` is shared by all shards and by the signal-handling thread.
pub struct Links {
    senders: Vec<Sender<ShardMsg>>,
    inbox_bells: Vec<Doorbell>,
    space_bells: Vec<Doorbell>,
    wants_space: Vec<AtomicBool>,
    stopping: AtomicBool,
}

impl Links {
    /// Create the mesh for `shards` shards with inboxes of `capacity` messages. Returns the
    /// shared links and one receiver per shard.
    pub fn new(shards: usize, capacity: usize) -> (Arc<Links>, Vec<Receiver<ShardMsg>>) {
        let (senders, receivers) = (0..shards)
            .map(|_| crossbeam_channel::bounded(capacity))
            .unzip();
        let links = Links {
            senders,
            inbox_bells: (0..shards).map(|_| Doorbell::default()).collect(),
            space_bells: (0..shards).map(|_| Doorbell::default()).collect(),
            wants_space: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            stopping: AtomicBool::new(false),
        };
        (Arc::new(links), receivers)
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.senders.len()
    }

    /// Try to put `msg` in `dst`'s inbox and wake it. Gives the message back when full.
    pub fn try_send(&self, dst: usize, msg: ShardMsg) -> Result<(), ShardMsg> {
        let Some(tx) = self.senders.get(dst) else {
            return Err(msg);
        };
        match tx.try_send(msg) {
            Ok(()) => {
                self.inbox_bells[dst].ring();
                Ok(())
            }
            Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => Err(m),
        }
    }

    /// Ask every shard to stop: set the shared flag and ring every doorbell. Never blocks and
    /// allocates nothing, so any thread (the signal thread, a panic hook) may call it at any
    /// time, any number of times.
    pub fn request_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for bell in self.inbox_bells.iter().chain(&self.space_bells) {
            bell.ring_hard();
        }
    }

    /// True once [`Links::request_stop`] was called.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Send from a shard, retrying (asynchronously) while `dst`'s inbox is full. For the rare
    /// control messages; stanzas go through the [`Outbox`]. Gives up (false) once the server
    /// is stopping: a destination that stopped reading must not hold the sender forever.
    pub async fn send(&self, dst: usize, mut msg: ShardMsg) -> bool {
        loop {
            match self.try_send(dst, msg) {
                Ok(()) => return true,
                Err(m) => msg = m,
            }
            if self.stopping() || dst >= self.shards() {
                return false;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// The receiving shard's doorbell.
    pub fn inbox_bell(&self, shard: usize) -> &Doorbell {
        &self.inbox_bells[shard]
    }

    /// After draining an inbox: wake every shard that is waiting for space.
    pub fn announce_space(&self) {
        for (i, flag) in self.wants_space.iter().enumerate() {
            if flag.swap(false, Ordering::AcqRel) {
                self.space_bells[i].ring();
            }
        }
    }
}

/// Stanzas for JIDs homed on one shard, stored back to back in one buffer.
#[derive(Default)]
pub struct Batch {
    data: Vec<u8>,
    items: Vec<BatchItem>,
}

/// One stanza in a [`Batch`]: ranges into the batch buffer.
struct BatchItem {
    stanza: Range<u32>,
    to: Range<u32>,
    from: Range<u32>,
    ty: u8,
}

/// A stanza read back from a [`Batch`].
pub struct BatchEntry<'a> {
    /// Kind and type.
    pub ty: StanzaType,
    /// Normalized addressee JID.
    pub to: &'a str,
    /// Normalized sender JID.
    pub from: &'a str,
    /// The stanza bytes, already stamped.
    pub stanza: &'a [u8],
}

impl Batch {
    /// Number of stanzas.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Append one stanza; `write` appends the stanza bytes to the buffer it is given.
    pub fn push(&mut self, ty: StanzaType, to: &str, from: &str, write: impl FnOnce(&mut Vec<u8>)) {
        let pos = |d: &Vec<u8>| u32::try_from(d.len()).unwrap_or(u32::MAX);
        let a = pos(&self.data);
        self.data.extend_from_slice(to.as_bytes());
        let b = pos(&self.data);
        self.data.extend_from_slice(from.as_bytes());
        let c = pos(&self.data);
        write(&mut self.data);
        let d = pos(&self.data);
        self.items.push(BatchItem {
            stanza: c..d,
            to: a..b,
            from: b..c,
            ty: ty.to_u8(),
        });
    }

    /// Append one stanza for several addressees, storing its bytes once.
    pub fn push_many(&mut self, ty: StanzaType, tos: &[&str], from: &str, stanza: &[u8]) {
        let pos = |d: &Vec<u8>| u32::try_from(d.len()).unwrap_or(u32::MAX);
        let s0 = pos(&self.data);
        self.data.extend_from_slice(stanza);
        let s1 = pos(&self.data);
        self.data.extend_from_slice(from.as_bytes());
        let f1 = pos(&self.data);
        for to in tos {
            let t0 = pos(&self.data);
            self.data.extend_from_slice(to.as_bytes());
            let t1 = pos(&self.data);
            self.items.push(BatchItem {
                stanza: s0..s1,
                to: t0..t1,
                from: s1..f1,
                ty: ty.to_u8(),
            });
        }
    }

    /// The stanzas in order.
    pub fn iter(&self) -> impl Iterator<Item = BatchEntry<'_>> {
        self.items.iter().filter_map(move |it| {
            let slice = |r: &Range<u32>| self.data.get(r.start as usize..r.end as usize);
            Some(BatchEntry {
                ty: StanzaType::from_u8(it.ty)?,
                to: std::str::from_utf8(slice(&it.to)?).ok()?,
                from: std::str::from_utf8(slice(&it.from)?).ok()?,
                stanza: slice(&it.stanza)?,
            })
        })
    }
}

/// A shard's outgoing side: pending batches per destination and the flusher that sends them.
pub struct Outbox {
    me: usize,
    links: Arc<Links>,
    pending: RefCell<Vec<Batch>>,
    dirty: Cell<bool>,
    flusher: RefCell<Option<Waker>>,
    uncongested: RefCell<Vec<Waker>>,
    high_water: usize,
}

impl Outbox {
    /// The outbox of shard `me`; a destination is congested above `high_water` pending bytes.
    pub fn new(me: usize, links: Arc<Links>, high_water: usize) -> Outbox {
        let n = links.shards();
        Outbox {
            me,
            links,
            pending: RefCell::new((0..n).map(|_| Batch::default()).collect()),
            dirty: Cell::new(false),
            flusher: RefCell::new(None),
            uncongested: RefCell::new(Vec::new()),
            high_water,
        }
    }

    /// This shard's index.
    pub fn me(&self) -> usize {
        self.me
    }

    /// The shared links.
    pub fn links(&self) -> &Arc<Links> {
        &self.links
    }

    /// Queue a stanza for shard `dst` (never this shard); it leaves with the next flush.
    pub fn push(
        &self,
        dst: usize,
        ty: StanzaType,
        to: &str,
        from: &str,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let mut pending = self.pending.borrow_mut();
        let Some(batch) = pending.get_mut(dst) else {
            return;
        };
        batch.push(ty, to, from, write);
        drop(pending);
        if !self.dirty.replace(true) {
            if let Some(w) = self.flusher.borrow().as_ref() {
                w.wake_by_ref();
            }
        }
    }

    /// Queue one stanza for several addressees on shard `dst`; its bytes travel once.
    pub fn push_many(&self, dst: usize, ty: StanzaType, tos: &[&str], from: &str, stanza: &[u8]) {
        let mut pending = self.pending.borrow_mut();
        let Some(batch) = pending.get_mut(dst) else {
            return;
        };
        batch.push_many(ty, tos, from, stanza);
        drop(pending);
        if !self.dirty.replace(true) {
            if let Some(w) = self.flusher.borrow().as_ref() {
                w.wake_by_ref();
            }
        }
    }

    /// True while some destination has more than the high-water mark pending.
    pub fn congested(&self) -> bool {
        self.pending
            .borrow()
            .iter()
            .any(|b| b.bytes() > self.high_water)
    }

    /// Wait until no destination is congested.
    pub async fn wait_uncongested(&self) {
        poll_fn(|cx| {
            if self.congested() {
                self.uncongested.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    /// The flusher task: runs for the shard's lifetime.
    pub async fn run_flusher(self: Rc<Self>) {
        loop {
            poll_fn(|cx| {
                if self.dirty.get() {
                    Poll::Ready(())
                } else {
                    *self.flusher.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
            // Let the tasks that are already runnable add to the batches first.
            futures_lite::future::yield_now().await;
            self.dirty.set(false);
            while self.flush_once() {
                // Announce the wait, then try again: a drain between the failed send and the
                // announcement would not ring the bell.
                self.links.wants_space[self.me].store(true, Ordering::Release);
                if !self.flush_once() {
                    break;
                }
                if self.links.stopping() {
                    break;
                }
                futures_lite::future::or(self.links.space_bells[self.me].wait(), async {
                    glommio::timer::sleep(MESH_POLL).await;
                })
                .await;
            }
            if !self.congested() {
                for w in self.uncongested.borrow_mut().drain(..) {
                    w.wake();
                }
            }
        }
    }

    /// Send every pending batch that fits; true if some destination's inbox was full.
    fn flush_once(&self) -> bool {
        let mut blocked = false;
        for dst in 0..self.links.shards() {
            let batch = {
                let mut pending = self.pending.borrow_mut();
                match pending.get_mut(dst) {
                    Some(b) if !b.is_empty() => std::mem::take(b),
                    _ => continue,
                }
            };
            if let Err(ShardMsg::Stanzas(batch)) =
                self.links.try_send(dst, ShardMsg::Stanzas(batch))
            {
                blocked = true;
                // Nothing was queued meanwhile (no await since the take): put it back as is.
                if let Some(slot) = self.pending.borrow_mut().get_mut(dst) {
                    *slot = batch;
                }
            }
        }
        blocked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::stanza::{MessageType, PresenceType};

    #[test]
    fn batch_round_trip() {
        let mut b = Batch::default();
        b.push(
            StanzaType::Message(MessageType::Chat),
            "b@d/r",
            "a@d/x",
            |o| o.extend_from_slice(b"<message/>"),
        );
        b.push(
            StanzaType::Presence(PresenceType::Unavailable),
            "c@d",
            "a@d/x",
            |o| o.extend_from_slice(b"<presence type='unavailable'/>"),
        );
        let v: Vec<_> = b.iter().map(|e| (e.ty, e.to, e.from, e.stanza)).collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].1, "b@d/r");
        assert_eq!(v[0].3, b"<message/>");
        assert_eq!(v[1].0, StanzaType::Presence(PresenceType::Unavailable));
        assert_eq!(v[1].2, "a@d/x");
    }

    #[test]
    fn full_inbox_gives_the_message_back() {
        let (links, rx) = Links::new(2, 1);
        assert!(links.try_send(1, ShardMsg::Shutdown).is_ok());
        assert!(links.try_send(1, ShardMsg::Shutdown).is_err());
        assert!(rx[1].try_recv().is_ok());
        assert!(links.try_send(1, ShardMsg::Shutdown).is_ok());
    }

    #[test]
    fn doorbell_wakes_across_threads() {
        let bell = Arc::new(Doorbell::default());
        let b2 = bell.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            b2.ring();
        });
        futures_lite::future::block_on(bell.wait());
        t.join().unwrap();
    }

    /// A full inbox is back-pressure: nothing is dropped, order is kept, the sender sees
    /// congestion, and the flusher resumes when the receiver announces space.
    #[test]
    fn full_inbox_keeps_batches_in_order() {
        let (links, rx) = Links::new(2, 1);
        let l2 = links.clone();
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let outbox = Rc::new(Outbox::new(0, l2.clone(), 64));
                glommio::spawn_local(outbox.clone().run_flusher()).detach();
                let ty = StanzaType::Message(MessageType::Chat);
                for i in 0..50u32 {
                    outbox.push(1, ty, "b@d/r", "a@d/r", |o| {
                        o.extend_from_slice(format!("<m{i}/>").as_bytes())
                    });
                    // One stanza per tick: each becomes its own batch attempt.
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                }
                assert!(outbox.congested(), "a full inbox must show as congestion");
                outbox.wait_uncongested().await;
                // Let the last batch leave.
                glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            })
            .unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // Drain slowly from another thread, announcing space after each receive.
        std::thread::sleep(std::time::Duration::from_millis(200));
        while got.len() < 50 && std::time::Instant::now() < deadline {
            match rx[1].try_recv() {
                Ok(ShardMsg::Stanzas(b)) => {
                    for e in b.iter() {
                        got.push(String::from_utf8(e.stanza.to_vec()).unwrap());
                    }
                    links.announce_space();
                }
                Ok(_) => panic!("unexpected message"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        ex.join().unwrap();
        let want: Vec<String> = (0..50).map(|i| format!("<m{i}/>")).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn shard_msg_stays_small() {
        assert!(std::mem::size_of::<ShardMsg>() <= 56);
    }
}
