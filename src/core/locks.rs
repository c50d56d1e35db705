//! Per-account locks of a module on one shard: changes to one account that must commit and
//! take effect in order (roster changes, privacy lists) queue on the account's lock, while
//! other accounts go on. A lock exists only while someone holds a handle to it.

use std::cell::RefCell;
use std::rc::Rc;

use ahash::AHashMap;
use glommio::sync::Semaphore;

/// One module's locks, keyed by bare JID.
#[derive(Default)]
pub struct AccountLocks {
    locks: RefCell<AHashMap<Box<str>, Rc<Semaphore>>>,
}

impl AccountLocks {
    /// A handle on the account's lock, created if needed. Take it in the scheduler step that
    /// received the request, so later requests for the account queue behind this one.
    pub fn handle(&self, user: &str) -> Rc<Semaphore> {
        self.locks
            .borrow_mut()
            .entry(user.into())
            .or_insert_with(|| Rc::new(Semaphore::new(1)))
            .clone()
    }

    /// The account's lock if a change is being made (or waits to be).
    pub fn pending(&self, user: &str) -> Option<Rc<Semaphore>> {
        self.locks.borrow().get(user).cloned()
    }

    /// Drop a handle, forgetting the lock when nobody else holds one.
    pub fn release(&self, user: &str, lock: Rc<Semaphore>) {
        drop(lock);
        let mut locks = self.locks.borrow_mut();
        if locks.get(user).is_some_and(|l| Rc::strong_count(l) == 1) {
            locks.remove(user);
        }
    }
}
