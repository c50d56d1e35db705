//! Test builds only: storage failures injected for chosen accounts, so end-to-end tests can
//! check that the server answers a storage failure as one (issue 8) instead of as a protocol
//! statement ("no such account", "empty roster", `unsubscribed`).
//!
//! `XMPPD_TEST_FAIL_STORAGE=<entry>[,<entry>...]`, read once when the first read-write
//! environment of the process is opened. An entry is `[read:|write:][N:]<bare JID>`:
//! `read:` fails the account's data reads (roster, pending requests, vCard, offline messages,
//! account existence; inside write transactions too), `write:` its data writes, no prefix
//! both; `N:` fails only the first N checked operations, then the account recovers (a
//! transient failure). Credentials (`AccountStore::get`) are never failed, so a faulted
//! account can still log in. The error is LMDB's EIO, an ordinary [`StorageError`].
//!
//! In release builds the checks compile to nothing.

use crate::StorageError;

/// Fail a read of `user`'s data if a test asked for it.
#[inline(always)]
pub(crate) fn read(user: &str) -> Result<(), StorageError> {
    #[cfg(debug_assertions)]
    imp::check(user, imp::Op::Read)?;
    let _ = user;
    Ok(())
}

/// Fail a write of `user`'s data if a test asked for it.
#[inline(always)]
pub(crate) fn write(user: &str) -> Result<(), StorageError> {
    #[cfg(debug_assertions)]
    imp::check(user, imp::Op::Write)?;
    let _ = user;
    Ok(())
}

/// Read the environment variable (once per process).
#[inline(always)]
pub(crate) fn init() {
    #[cfg(debug_assertions)]
    imp::init();
}

#[cfg(debug_assertions)]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    use crate::StorageError;

    const VAR: &str = "XMPPD_TEST_FAIL_STORAGE";

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Op {
        Read,
        Write,
    }

    pub(super) struct Entry {
        pub(super) user: String,
        pub(super) read: bool,
        pub(super) write: bool,
        /// Failures left; `u64::MAX` for "always".
        left: AtomicU64,
    }

    static FAULTS: OnceLock<Vec<Entry>> = OnceLock::new();

    pub(super) fn init() {
        FAULTS.get_or_init(|| match std::env::var(VAR) {
            Ok(spec) => parse(&spec),
            Err(_) => Vec::new(),
        });
    }

    impl Entry {
        #[cfg(test)]
        pub(super) fn left(&self) -> u64 {
            self.left.load(Ordering::Relaxed)
        }
    }

    pub(super) fn parse(spec: &str) -> Vec<Entry> {
        let mut out = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (read, write, rest) = if let Some(r) = entry.strip_prefix("read:") {
                (true, false, r)
            } else if let Some(r) = entry.strip_prefix("write:") {
                (false, true, r)
            } else {
                (true, true, entry)
            };
            let (left, user) = match rest.split_once(':') {
                Some((n, user)) if n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() => {
                    (n.parse().unwrap_or(u64::MAX), user)
                }
                _ => (u64::MAX, rest),
            };
            eprintln!("{VAR}: failing {entry}");
            out.push(Entry {
                user: user.to_string(),
                read,
                write,
                left: AtomicU64::new(left),
            });
        }
        out
    }

    pub(super) fn check(user: &str, op: Op) -> Result<(), StorageError> {
        let Some(faults) = FAULTS.get() else {
            return Ok(());
        };
        for e in faults {
            let wanted = match op {
                Op::Read => e.read,
                Op::Write => e.write,
            };
            if !wanted || e.user != user {
                continue;
            }
            let fail = e
                .left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| match n {
                    0 => None,
                    u64::MAX => Some(u64::MAX),
                    n => Some(n - 1),
                })
                .is_ok();
            if fail {
                // EIO, as a failing disk would report it.
                return Err(StorageError::from(lmdb::Error::Other(5)));
            }
        }
        Ok(())
    }
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::imp::parse;

    #[test]
    fn entries_name_what_fails_and_how_often() {
        let e = parse("read:2:a@x, write:b@x,,c@x");
        let got: Vec<_> = e
            .iter()
            .map(|e| (e.user.as_str(), e.read, e.write, e.left()))
            .collect();
        assert_eq!(
            got,
            [
                ("a@x", true, false, 2),
                ("b@x", false, true, u64::MAX),
                ("c@x", true, true, u64::MAX)
            ]
        );
    }
}
