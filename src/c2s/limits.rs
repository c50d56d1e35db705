//! Per-address limits before authentication (issue 8): concurrent unauthenticated
//! connections, connection rate, and failed logins with exponential backoff.
//!
//! One table for the whole process, shared by every shard's accept loop: an attacker's
//! connections land on all shards, so per-shard tables would multiply every limit by the shard
//! count. The table is consulted only when a connection is accepted, authenticates or ends
//! before authenticating, and at each SASL attempt, never on the stanza path. It is split into
//! [`STRIPES`] independently locked stripes, picked by a keyed hash (so that an attacker
//! cannot aim at one stripe), each holding at most [`STRIPE_CAPACITY`] addresses: the memory is
//! bounded (about 0.5 MiB) whatever the peers do.
//!
//! An address is an IPv4 address, or an IPv6 /64 (one subscriber's allocation: counting single
//! IPv6 addresses would let one host use 2^64 of them).
//!
//! When a stripe is full, the entry that matters least is forgotten: one with no
//! unauthenticated connection, preferring the one idle longest. If every address in the stripe
//! has a connection still authenticating, the new connection is refused: that takes more than
//! [`STRIPE_CAPACITY`] distinct networks holding connections open at once, and refusing is
//! what `--max-connections` would do anyway.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;

/// Number of independently locked parts of the table.
pub const STRIPES: usize = 64;
/// Addresses one stripe remembers.
pub const STRIPE_CAPACITY: usize = 128;

/// The limits, from the configuration (see `--max-unauth-per-ip` and the flags after it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Concurrent connections that have not authenticated yet (0: unlimited).
    pub max_unauth: u32,
    /// New connections per second, sustained (0: unlimited).
    pub conn_rate: u32,
    /// New connections in a burst.
    pub conn_burst: u32,
    /// Failed logins allowed before backoff starts.
    pub auth_failures: u32,
    /// Failed logins older than this are forgotten.
    pub failure_window: Duration,
    /// Longest wait between attempts under backoff.
    pub backoff_max: Duration,
    /// Loopback addresses are not limited.
    pub exempt_loopback: bool,
}

impl Policy {
    /// The policy the configuration asks for.
    pub fn from_config(c: &Config) -> Policy {
        Policy {
            max_unauth: c.max_unauth_per_ip,
            conn_rate: c.conn_rate_per_ip,
            conn_burst: c.conn_burst_per_ip,
            auth_failures: c.auth_failures_per_ip,
            failure_window: c.auth_failure_window,
            backoff_max: c.auth_backoff_max,
            exempt_loopback: c.exempt_loopback,
        }
    }

    /// How long an address with `failures` recent failures, the last at `last`, must wait
    /// before its next attempt: nothing for the first `auth_failures`, then 1 s doubling with
    /// each further failure, capped at `backoff_max`.
    fn backoff(&self, failures: u32, last: Instant, now: Instant) -> Option<Duration> {
        if failures < self.auth_failures.max(1) {
            return None;
        }
        let doublings = (failures - self.auth_failures.max(1)).min(20);
        let wait = Duration::from_secs(1 << doublings).min(self.backoff_max);
        let until = last + wait;
        (until > now).then(|| until - now)
    }
}

/// Why a new connection is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The address opens connections faster than `--conn-rate-per-ip` allows.
    Rate,
    /// The address already has `--max-unauth-per-ip` connections authenticating.
    Unauthenticated,
    /// Every address the stripe can remember has a connection authenticating.
    Full,
}

/// The table key: an IPv4 address (mapped) or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key(u128);

impl Key {
    fn of(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(v4) => Key(u128::from(v4.to_ipv6_mapped())),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Key(u128::from(v4.to_ipv6_mapped())),
                None => Key(u128::from(v6) & !((1u128 << 64) - 1)),
            },
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: Key,
    /// Connections accepted and not yet authenticated or closed.
    unauth: u32,
    /// Connection tokens (token bucket), in thousandths.
    tokens_milli: u64,
    /// When the tokens were last refilled.
    refilled: Instant,
    /// Failed logins in the current window.
    failures: u32,
    /// The last failed login.
    last_failure: Instant,
    /// The last time anything happened for this address.
    seen: Instant,
}

impl Entry {
    fn new(key: Key, policy: &Policy, now: Instant) -> Entry {
        Entry {
            key,
            unauth: 0,
            tokens_milli: u64::from(policy.conn_burst.max(1)) * 1000,
            refilled: now,
            failures: 0,
            last_failure: now,
            seen: now,
        }
    }

    /// Forget failures outside the window.
    fn expire(&mut self, policy: &Policy, now: Instant) {
        if self.failures > 0 && now.duration_since(self.last_failure) > policy.failure_window {
            self.failures = 0;
        }
    }

    /// Connection tokens (thousandths) at `now`: what is left, refilled at the rate since the
    /// last refill, capped at the burst.
    fn tokens(&self, policy: &Policy, now: Instant) -> u64 {
        let burst = u64::from(policy.conn_burst.max(1)) * 1000;
        let elapsed =
            u64::try_from(now.duration_since(self.refilled).as_millis()).unwrap_or(u64::MAX);
        self.tokens_milli
            .saturating_add(elapsed.saturating_mul(u64::from(policy.conn_rate)))
            .min(burst)
    }

    /// Nothing would change if the entry were forgotten now.
    fn idle(&self, policy: &Policy, now: Instant) -> bool {
        let bucket_full = policy.conn_rate == 0
            || self.tokens(policy, now) == u64::from(policy.conn_burst.max(1)) * 1000;
        self.unauth == 0 && self.failures == 0 && bucket_full
    }
}

#[derive(Default)]
struct Stripe {
    entries: Vec<Entry>,
}

impl Stripe {
    /// The entry for `key`, created (forgetting a less important one if full) when `create`.
    fn entry(
        &mut self,
        key: Key,
        policy: &Policy,
        now: Instant,
        create: bool,
    ) -> Option<&mut Entry> {
        if let Some(i) = self.entries.iter().position(|e| e.key == key) {
            let e = &mut self.entries[i];
            e.expire(policy, now);
            e.seen = now;
            return Some(e);
        }
        if !create {
            return None;
        }
        if self.entries.len() >= STRIPE_CAPACITY {
            let victim = self
                .entries
                .iter()
                .position(|e| e.idle(policy, now))
                .or_else(|| {
                    self.entries
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.unauth == 0)
                        .min_by_key(|(_, e)| e.seen)
                        .map(|(i, _)| i)
                })?;
            self.entries.swap_remove(victim);
        }
        self.entries.push(Entry::new(key, policy, now));
        self.entries.last_mut()
    }
}

/// The process-wide per-address table.
pub struct IpLimits {
    policy: Policy,
    hasher: ahash::RandomState,
    stripes: Box<[Mutex<Stripe>]>,
}

/// An admitted connection's place in its address's count of unauthenticated connections;
/// dropping it (at authentication or close) gives the place back.
pub struct Preauth {
    limits: Arc<IpLimits>,
    key: Key,
}

impl Drop for Preauth {
    fn drop(&mut self) {
        let now = Instant::now();
        let policy = self.limits.policy;
        let mut stripe = self.limits.stripe(self.key);
        if let Some(e) = stripe.entry(self.key, &policy, now, false) {
            e.unauth = e.unauth.saturating_sub(1);
        }
    }
}

impl IpLimits {
    /// An empty table enforcing `policy`.
    pub fn new(policy: Policy) -> IpLimits {
        IpLimits {
            policy,
            hasher: ahash::RandomState::new(),
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
        }
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.policy.exempt_loopback && ip.is_loopback()
    }

    fn stripe(&self, key: Key) -> std::sync::MutexGuard<'_, Stripe> {
        let i = self.hasher.hash_one(key) as usize % STRIPES;
        // A panic while holding a stripe leaves plain counters behind: still usable.
        self.stripes[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new connection from `ip`: take a connection token and a place among the address's
    /// unauthenticated connections. `None` in the guard for an exempt address.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Option<Preauth>, Refusal> {
        if self.exempt(ip) {
            return Ok(None);
        }
        let p = self.policy;
        let key = Key::of(ip);
        let mut stripe = self.stripe(key);
        let e = stripe.entry(key, &p, now, true).ok_or(Refusal::Full)?;
        if p.conn_rate > 0 {
            e.tokens_milli = e.tokens(&p, now);
            e.refilled = now;
            if e.tokens_milli < 1000 {
                return Err(Refusal::Rate);
            }
            e.tokens_milli -= 1000;
        }
        if p.max_unauth > 0 && e.unauth >= p.max_unauth {
            return Err(Refusal::Unauthenticated);
        }
        e.unauth += 1;
        Ok(Some(Preauth {
            limits: self.clone(),
            key,
        }))
    }

    /// How long `ip` must still wait before it may try to authenticate again (backoff after
    /// failed logins); `None` if it may try now.
    pub fn auth_wait(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.exempt(ip) {
            return None;
        }
        let p = self.policy;
        let key = Key::of(ip);
        let mut stripe = self.stripe(key);
        let e = stripe.entry(key, &p, now, false)?;
        p.backoff(e.failures, e.last_failure, now)
    }

    /// `ip` failed `n` logins.
    pub fn auth_failed(&self, ip: IpAddr, n: u32, now: Instant) {
        if n == 0 || self.exempt(ip) {
            return;
        }
        let p = self.policy;
        let key = Key::of(ip);
        let mut stripe = self.stripe(key);
        if let Some(e) = stripe.entry(key, &p, now, true) {
            let before = e.failures;
            e.failures = e.failures.saturating_add(n);
            e.last_failure = now;
            if before < p.auth_failures.max(1) && e.failures >= p.auth_failures.max(1) {
                tracing::warn!(%ip, failures = e.failures, "failed logins from one address: backing off");
            }
        }
    }

    /// Addresses remembered.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        (0..STRIPES)
            .map(|i| {
                self.stripes[i]
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            max_unauth: 3,
            conn_rate: 10,
            conn_burst: 5,
            auth_failures: 2,
            failure_window: Duration::from_secs(600),
            backoff_max: Duration::from_secs(30),
            exempt_loopback: false,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unauthenticated_connections_per_address_are_bounded_and_given_back() {
        let t = Arc::new(IpLimits::new(Policy {
            conn_rate: 0,
            ..policy()
        }));
        let now = Instant::now();
        let held: Vec<_> = (0..3)
            .map(|_| t.admit(ip("192.0.2.1"), now).unwrap())
            .collect();
        assert_eq!(
            t.admit(ip("192.0.2.1"), now).err(),
            Some(Refusal::Unauthenticated)
        );
        // Another address is not affected.
        assert!(t.admit(ip("192.0.2.2"), now).is_ok());
        drop(held);
        assert!(t.admit(ip("192.0.2.1"), now).is_ok());
    }

    #[test]
    fn connection_rate_per_address_is_a_token_bucket() {
        let t = Arc::new(IpLimits::new(Policy {
            max_unauth: 0,
            ..policy()
        }));
        let now = Instant::now();
        for _ in 0..5 {
            assert!(t.admit(ip("198.51.100.7"), now).is_ok());
        }
        assert_eq!(t.admit(ip("198.51.100.7"), now).err(), Some(Refusal::Rate));
        // 10 per second: one token back after 100 ms, not before.
        assert_eq!(
            t.admit(ip("198.51.100.7"), now + Duration::from_millis(99))
                .err(),
            Some(Refusal::Rate)
        );
        assert!(t
            .admit(ip("198.51.100.7"), now + Duration::from_millis(200))
            .is_ok());
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let t = Arc::new(IpLimits::new(Policy {
            conn_rate: 0,
            ..policy()
        }));
        let now = Instant::now();
        let _a = t.admit(ip("2001:db8:1:2::1"), now).unwrap();
        let _b = t.admit(ip("2001:db8:1:2:ffff::9"), now).unwrap();
        let _c = t.admit(ip("2001:db8:1:2:1:2:3:4"), now).unwrap();
        assert_eq!(
            t.admit(ip("2001:db8:1:2::77"), now).err(),
            Some(Refusal::Unauthenticated)
        );
        assert!(t.admit(ip("2001:db8:1:3::1"), now).is_ok());
        // An IPv4-mapped address is the IPv4 address.
        let _d = t.admit(ip("::ffff:192.0.2.9"), now).unwrap();
        let _e = t.admit(ip("192.0.2.9"), now).unwrap();
        let _f = t.admit(ip("192.0.2.9"), now).unwrap();
        assert!(t.admit(ip("::ffff:192.0.2.9"), now).is_err());
    }

    #[test]
    fn failed_logins_back_off_exponentially_and_expire() {
        let p = policy();
        let t = IpLimits::new(p);
        let a = ip("203.0.113.5");
        let t0 = Instant::now();
        assert_eq!(t.auth_wait(a, t0), None);
        t.auth_failed(a, 1, t0);
        assert_eq!(t.auth_wait(a, t0), None, "the first failures are free");
        t.auth_failed(a, 1, t0);
        assert_eq!(t.auth_wait(a, t0), Some(Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(t.auth_wait(a, t1), None);
        t.auth_failed(a, 1, t1);
        assert_eq!(t.auth_wait(a, t1), Some(Duration::from_secs(2)));
        for _ in 0..10 {
            t.auth_failed(a, 1, t1);
        }
        assert_eq!(t.auth_wait(a, t1), Some(Duration::from_secs(30)), "capped");
        // Another address may try.
        assert_eq!(t.auth_wait(ip("203.0.113.6"), t1), None);
        // Past the window, everything is forgotten.
        let later = t1 + Duration::from_secs(601);
        assert_eq!(t.auth_wait(a, later), None);
        t.auth_failed(a, 1, later);
        assert_eq!(t.auth_wait(a, later), None);
    }

    #[test]
    fn loopback_is_exempt_only_when_configured() {
        let now = Instant::now();
        let strict = Arc::new(IpLimits::new(policy()));
        for _ in 0..3 {
            std::mem::forget(strict.admit(ip("127.0.0.1"), now).unwrap());
        }
        assert!(strict.admit(ip("127.0.0.1"), now).is_err());
        strict.auth_failed(ip("::1"), 5, now);
        assert!(strict.auth_wait(ip("::1"), now).is_some());

        let lax = Arc::new(IpLimits::new(Policy {
            exempt_loopback: true,
            ..policy()
        }));
        for _ in 0..50 {
            assert!(matches!(lax.admit(ip("127.0.0.1"), now), Ok(None)));
        }
        lax.auth_failed(ip("::ffff:127.0.0.1"), 50, now);
        assert_eq!(lax.auth_wait(ip("127.0.0.1"), now), None);
        assert!(lax.admit(ip("10.0.0.1"), now).unwrap().is_some());
    }

    #[test]
    fn the_table_is_bounded_under_an_address_flood() {
        let t = Arc::new(IpLimits::new(Policy {
            max_unauth: 0,
            ..policy()
        }));
        let now = Instant::now();
        // 200,000 addresses that each fail once: the table keeps at most its capacity.
        for i in 0..200_000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.auth_failed(a, 1, now);
        }
        assert!(t.tracked() <= STRIPES * STRIPE_CAPACITY);
        // Addresses holding connections are not forgotten for newcomers; when a stripe has
        // only those, newcomers to it are refused, not tracked beyond the bound.
        let mut held = Vec::new();
        let mut full = 0;
        for i in 0..(STRIPES * STRIPE_CAPACITY * 2) as u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            match t.admit(a, now) {
                Ok(g) => held.push((a, g)),
                Err(Refusal::Full) => full += 1,
                Err(r) => panic!("unexpected {r:?}"),
            }
        }
        assert!(full > 0);
        assert!(t.tracked() <= STRIPES * STRIPE_CAPACITY);
        assert!(held.len() <= STRIPES * STRIPE_CAPACITY);
        // Each held address still counts: a second connection is counted, not forgotten.
        drop(held);
        assert!(t.tracked() <= STRIPES * STRIPE_CAPACITY);
    }
}
