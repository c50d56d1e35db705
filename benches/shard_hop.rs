//! One cross-shard hop through the mesh: stanzas appended to a [`Batch`] (the sending shard's
//! pending batch in its `Outbox`), the batch sent with [`Links::try_send`] (what the outbox
//! flusher does, doorbell ring included), received from the destination's crossbeam inbox and
//! every entry read back ([`Batch::iter`]), then [`Links::announce_space`] (what the shard's
//! inbox loop in `server.rs` does). Reported per stanza, for batches of 1 and 64.
//!
//! - `same_thread`: push, send, receive and read on one thread: the mesh's own CPU cost, no
//!   cache-line transfer between cores.
//! - `round_trip_poll`: the receiver is a second thread polling its inbox without sleeping (a
//!   busy shard; it yields the core between polls); it reads the batch and sends it back
//!   through the mesh, where this thread polls the same way. One iteration is two hops: the
//!   batch out and back.
//! - `round_trip_park`: the same with a receiver blocked in `recv` (an idle shard woken by the
//!   OS), so the figure includes a thread wake-up per hop.
//!
//! Not included: the `Outbox` bookkeeping around `Batch::push` (a `RefCell` borrow and a
//! flag) and the executor tick between push and flush. On this 2-core machine the threaded
//! variants use both cores.
//!
//! Run with `cargo bench --bench shard_hop`.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use xmppd::shard::{Batch, Links, ShardMsg};
use xmppd::xmpp::stanza::{MessageType, StanzaType};

fn main() {
    divan::main();
}

/// A stamped chat message as it crosses shards (about 200 B).
const STANZA: &[u8] =
    b"<message type='chat' to='juliet@example.com' from='romeo@example.com/orchard' \
    id='m00000042'><body>Are we still on for lunch tomorrow? I can book the usual place.</body>\
    </message>";
const TO: &str = "juliet@example.com";
const FROM: &str = "romeo@example.com/orchard";
const CHAT: StanzaType = StanzaType::Message(MessageType::Chat);
/// Inbox capacity: what `server.rs` gives each shard is larger; only one batch is ever queued
/// here.
const CAPACITY: usize = 1024;

/// A batch of `n` copies of the stanza, built as the outbox builds it.
fn batch(n: usize) -> Batch {
    let mut b = Batch::default();
    for _ in 0..n {
        assert!(b.push(CHAT, TO, FROM, |out| out.extend_from_slice(STANZA)));
    }
    b
}

/// Reads every entry, as the receiving shard's delivery loop does; returns the stanza bytes.
fn read(b: &Batch) -> usize {
    b.iter()
        .map(|e| black_box(e.to).len() + black_box(e.from).len() + black_box(e.stanza).len())
        .sum()
}

#[divan::bench(args = [1, 64])]
fn same_thread(bencher: Bencher, n: usize) {
    let (links, rx) = Links::new(2, CAPACITY);
    bencher.counter(ItemsCount::new(n)).bench_local(|| {
        if links.try_send(1, ShardMsg::Stanzas(batch(n))).is_err() {
            panic!("inbox full");
        }
        let Ok(ShardMsg::Stanzas(b)) = rx[1].try_recv() else {
            panic!("nothing received");
        };
        let bytes = read(&b);
        links.announce_space();
        bytes
    });
}

#[divan::bench(args = [1, 64])]
fn round_trip_poll(bencher: Bencher, n: usize) {
    round_trip(bencher, n, Wait::Poll);
}

#[divan::bench(args = [1, 64])]
fn round_trip_park(bencher: Bencher, n: usize) {
    round_trip(bencher, n, Wait::Park);
}

#[derive(Clone, Copy)]
enum Wait {
    Poll,
    Park,
}

/// Shard 0 (this thread) sends a batch to shard 1 (a second thread), which reads it and sends
/// it back; shard 0 waits for it the same way. Ends shard 1 with [`ShardMsg::Shutdown`].
fn round_trip(bencher: Bencher, n: usize, wait: Wait) {
    let (links, mut rx) = Links::new(2, CAPACITY);
    let rx1 = rx.pop().expect("two inboxes");
    let rx0 = rx.pop().expect("two inboxes");
    let echo = std::thread::spawn({
        let links = Arc::clone(&links);
        move || loop {
            match receive(&rx1, wait) {
                ShardMsg::Stanzas(b) => {
                    read(&b);
                    links.announce_space();
                    send(&links, 0, ShardMsg::Stanzas(b));
                }
                ShardMsg::Shutdown => return,
                ShardMsg::Adopt(_) => unreachable!("no connections here"),
            }
        }
    });
    bencher.counter(ItemsCount::new(n)).bench_local(|| {
        send(&links, 1, ShardMsg::Stanzas(batch(n)));
        let ShardMsg::Stanzas(b) = receive(&rx0, wait) else {
            panic!("unexpected message");
        };
        links.announce_space();
        b.len()
    });
    send(&links, 1, ShardMsg::Shutdown);
    echo.join().expect("echo thread");
}

fn send(links: &Links, dst: usize, msg: ShardMsg) {
    if links.try_send(dst, msg).is_err() {
        panic!("inbox {dst} full");
    }
}

fn receive(rx: &Receiver<ShardMsg>, wait: Wait) -> ShardMsg {
    match wait {
        Wait::Poll => loop {
            if let Ok(msg) = rx.try_recv() {
                return msg;
            }
            // Yield rather than spin: with two cores and two polling threads, a spinning
            // thread that lost its core to a third process would stall the other for a whole
            // time slice.
            std::thread::yield_now();
        },
        Wait::Park => rx.recv().expect("sender alive"),
    }
}
