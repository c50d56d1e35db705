//! xmppd: a thread-per-core XMPP server.
//!
//! The crate is a library so that tests, benches and fuzz targets reach the pure modules
//! (`xml`, `xmpp`, `stream`); `main.rs` is the composition root. See `docs/DESIGN.md` for
//! the map of modules and the direction of dependencies.

pub mod admin;
pub mod c2s;
pub mod component;
pub mod config;
pub mod core;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod modules;
pub mod router;
pub mod s2s;
pub mod server;
pub mod session;
pub mod shard;
pub mod stream;
pub mod tls;
pub mod util;
pub mod xml;
pub mod xmpp;
