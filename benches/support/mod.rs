//! What several benchmarks share (a module, not a bench target: Cargo discovers only
//! `benches/*.rs` and `benches/*/main.rs`).

use xmppd_storage::{Account, ScramKeys};

/// An account with placeholder keys (the benchmarks never log in).
pub fn account(n: u64) -> Account {
    let keys = |len: usize| ScramKeys {
        salt: n.to_le_bytes().to_vec(),
        iterations: 4096,
        stored_key: vec![1; len],
        server_key: vec![2; len],
    };
    Account {
        sha1: keys(20),
        sha256: keys(32),
        created_unix: n,
        disabled: false,
    }
}
