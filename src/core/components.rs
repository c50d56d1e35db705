//! Which XEP-0114 components are connected, and where their streams are.
//!
//! Two tables, both off the stanza path's locks:
//! - [`Directory`] (one per process, behind a mutex): which component domains have a stream
//!   now. A stream claims its domain when its handshake succeeds and releases it when it
//!   ends; a second stream for a claimed domain is refused (`conflict`, COMP-02). Disco#items
//!   on a served domain lists the claimed domains (COMP-09). It is touched at a handshake, at
//!   the end of a stream and by disco#items, never per stanza.
//! - [`Links`] (one per shard, no lock): the send queue of each component stream living on
//!   this shard. A component's stream lives on the home shard of its domain
//!   (`shard_of(domain)`), so the router reaches it from any shard with one hop, as it
//!   reaches an account.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ahash::AHashMap;

use super::ClientHandle;

/// The process-wide list of connected component domains.
#[derive(Default)]
pub struct Directory {
    claimed: Mutex<AHashMap<String, u64>>,
    next: AtomicU64,
}

/// A domain claimed by one component stream; [`Directory::release`] gives it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim(u64);

impl Directory {
    /// Claim `domain` for a new stream: None when another stream has it (COMP-02).
    pub fn claim(&self, domain: &str) -> Option<Claim> {
        let mut m = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        if m.contains_key(domain) {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        m.insert(domain.to_string(), id);
        Some(Claim(id))
    }

    /// Release `domain` if `claim` still holds it.
    pub fn release(&self, domain: &str, claim: Claim) {
        let mut m = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(domain) == Some(&claim.0) {
            m.remove(domain);
        }
    }

    /// The connected component domains, sorted.
    pub fn connected(&self) -> Vec<String> {
        let m = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = m.keys().cloned().collect();
        v.sort_unstable();
        v
    }
}

/// The component streams living on one shard: domain → send queue.
#[derive(Default)]
pub struct Links {
    by_domain: RefCell<AHashMap<Box<str>, Rc<ClientHandle>>>,
}

impl Links {
    /// A component stream for `domain` is up on this shard.
    pub fn attach(&self, domain: &str, handle: Rc<ClientHandle>) {
        self.by_domain.borrow_mut().insert(domain.into(), handle);
    }

    /// The stream for `domain` ended (only if `handle` is still the one attached).
    pub fn detach(&self, domain: &str, handle: &Rc<ClientHandle>) {
        let mut m = self.by_domain.borrow_mut();
        if m.get(domain).is_some_and(|h| Rc::ptr_eq(h, handle)) {
            m.remove(domain);
        }
    }

    /// The send queue of `domain`'s stream, if it is connected here.
    pub fn get(&self, domain: &str) -> Option<Rc<ClientHandle>> {
        self.by_domain.borrow().get(domain).cloned()
    }

    /// Every attached stream (for shutdown).
    pub fn all(&self) -> Vec<(String, Rc<ClientHandle>)> {
        self.by_domain
            .borrow()
            .iter()
            .map(|(d, h)| (d.to_string(), h.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comp_02_a_claimed_domain_refuses_a_second_stream_until_released() {
        let d = Directory::default();
        let a = d.claim("irc.example.org").expect("first claim");
        assert_eq!(d.claim("irc.example.org"), None);
        assert!(d.claim("other.example.org").is_some());
        assert_eq!(d.connected(), vec!["irc.example.org", "other.example.org"]);
        d.release("irc.example.org", a);
        let b = d.claim("irc.example.org").expect("claim after release");
        // A stale release (the first stream's) does not free the second stream's claim.
        d.release("irc.example.org", a);
        assert_eq!(d.claim("irc.example.org"), None);
        d.release("irc.example.org", b);
        assert_eq!(d.connected(), vec!["other.example.org"]);
    }

    #[test]
    fn a_link_detaches_only_its_own_handle() {
        let l = Links::default();
        let now = std::time::Instant::now();
        let (h1, h2) = (
            Rc::new(ClientHandle::new(1 << 16, now)),
            Rc::new(ClientHandle::new(1 << 16, now)),
        );
        l.attach("c.example", h1.clone());
        l.attach("c.example", h2.clone());
        l.detach("c.example", &h1);
        assert!(l.get("c.example").is_some_and(|h| Rc::ptr_eq(&h, &h2)));
        l.detach("c.example", &h2);
        assert!(l.get("c.example").is_none());
    }
}
