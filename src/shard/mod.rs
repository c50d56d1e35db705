//! Shards: one glommio executor per core, the messages they exchange, and `shard_of`, which
//! gives every bare JID its home shard.
//!
//! An account's resources, roster and presence live on its home shard, so they need no locks.
//! A connection is accepted by whichever shard the kernel picks (SO_REUSEPORT) and moves to
//! its home shard right after authentication ([`ShardMsg::Adopt`]).

pub mod mesh;

use std::any::Any;
use std::future::Future;

use glommio::{LocalExecutorBuilder, Placement};

pub use mesh::{Batch, BatchEntry, Doorbell, Links, Outbox};

/// Messages between shards.
pub enum ShardMsg {
    /// Stanzas for JIDs homed on the receiving shard.
    Stanzas(Batch),
    /// An authenticated client connection moving to its home shard (a `c2s::Handoff`; typed
    /// as `Any` so that this module does not depend on `c2s`).
    Adopt(Box<dyn Any + Send>),
    /// Close every stream with `system-shutdown` and stop.
    Shutdown,
}

/// The home shard of a normalized bare JID (or domain): FNV-1a, stable across runs and builds
/// so that `xmppd shard-of` and tests can predict placement.
pub fn shard_of(bare: &str, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bare.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Fold the high bits in: FNV's low bits are weak for short keys.
    h ^= h >> 32;
    (h % shards as u64) as usize
}

/// How shard executors are built.
#[derive(Clone, Copy, Debug)]
pub struct ExecutorOptions {
    /// Pin shard `i` to CPU `i` (modulo the CPU count).
    pub pin: bool,
    /// Poll this long before sleeping in the kernel when idle (None: sleep at once).
    pub spin_before_park: Option<std::time::Duration>,
    /// io_uring queue depth.
    pub ring_depth: usize,
}

/// Start `shards` executors; shard `i` runs `body(i)` and the thread ends when it returns.
pub fn spawn<F, Fut>(
    shards: usize,
    opts: ExecutorOptions,
    body: F,
) -> std::io::Result<Vec<glommio::ExecutorJoinHandle<()>>>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (0..shards)
        .map(|i| {
            let placement = if opts.pin {
                Placement::Fixed(i % cpus)
            } else {
                Placement::Unbound
            };
            let body = body.clone();
            let mut builder = LocalExecutorBuilder::new(placement)
                .name(&format!("xmppd-shard-{i}"))
                .ring_depth(opts.ring_depth);
            if let Some(spin) = opts.spin_before_park {
                builder = builder.spin_before_park(spin);
            }
            builder
                .spawn(move || body(i))
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_of_is_stable_and_spreads() {
        assert_eq!(shard_of("alice@localhost", 1), 0);
        let a = shard_of("alice@localhost", 2);
        assert_eq!(a, shard_of("alice@localhost", 2));
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[shard_of(&format!("user{i}@example.com"), 4)] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
    }
}
